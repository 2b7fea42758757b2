#!/usr/bin/env bash
# NeMo-style SSL on a CPU: pre-train conf/conformer_ssl.yaml (NeMo's structure, shrunk by overrides
# only: the values of conf/conformer_ssl_tiny.yaml) on unlabelled audio (FSDD train, the bundled
# espeak-ng digits, the AN4 subset; utterances of 0.5-2 s), then fine-tune the encoder with 10% of
# FSDD's training labels (270 utterances) into a small Conformer-Transducer, against the same model
# trained from scratch (same recipe, steps and seed). Learning curves: $EXP/pretrain/learning_curve.png,
# $EXP/rnnt_*/learning_curve.png, both WER curves in $EXP/wer_curves.png; test WERs printed by each run.
#   bash recipes/run_ssl_fsdd.sh [SHARED_DATA] [EXP_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data} EXP=${2:-exp/ssl_fsdd}
. .venv/bin/activate
M=$EXP/manifests
bash recipes/common/fsdd_ssl_data.sh "$DATA" "$M"
myna pretrain conf/conformer_ssl.yaml \
  model.train_ds.manifest_filepath=[$M/train.json,data/espeak_digits/train.json,$M/an4_audio.json] \
  model.validation_ds.manifest_filepath=data/espeak_digits/dev.json \
  model.train_ds.min_duration=0.5 \
  model.validation_ds.min_duration=0.5 \
  model.train_ds.max_duration=2.0 \
  model.train_ds.num_workers=0 \
  model.validation_ds.num_workers=0 \
  model.train_ds.use_semi_sorted_batching=true \
  model.spec_augment.patch_size=8 \
  model.encoder.n_layers=2 \
  model.encoder.d_model=96 \
  model.encoder.n_heads=4 \
  model.encoder.conv_kernel_size=15 \
  model.decoder_out=64 \
  model.loss_list.contrastive.decoder.feat_hidden=96 \
  model.loss_list.contrastive.loss.codebook_size=32 \
  model.loss_list.contrastive.loss.num_negatives=8 \
  model.loss_list.mlm.decoder.num_classes=1024 \
  model.optim.lr=0.5 \
  model.optim.sched.warmup_steps=300 \
  trainer.devices=1 trainer.max_steps=400 trainer.val_check_interval=100 \
  exp_manager.exp_dir=$EXP/pretrain
for init in pretrained scratch; do
  ENCODER=()
  if [ $init = pretrained ]; then
    ENCODER=("init_from_nemo_model={ssl: {path: $EXP/pretrain/conformer_ssl.nemo, include: [encoder]}}")
  fi
  myna train conf/conformer_transducer_bpe_large.yaml \
    name=fsdd10_transducer \
    seed=1 \
    model.tokenizer.vocab_size=32 \
    model.train_ds.manifest_filepath=$M/train_10pct.json \
    model.validation_ds.manifest_filepath=$M/dev.json \
    model.test_ds.manifest_filepath=$M/test.json \
    model.train_ds.num_workers=0 \
    model.train_ds.use_semi_sorted_batching=true \
    model.encoder.n_layers=2 \
    model.encoder.d_model=96 \
    model.encoder.n_heads=4 \
    model.encoder.conv_kernel_size=15 \
    model.decoder.prednet.pred_hidden=128 \
    model.joint.jointnet.joint_hidden=128 \
    model.optim.lr=0.5 \
    model.optim.sched.warmup_steps=200 \
    model.optim.sched.d_model=96 \
    model.decoding.final_strategy=greedy_batch \
    trainer.max_steps=500 trainer.val_check_interval=100 trainer.precision=32-true \
    exp_manager.exp_dir=$EXP/rnnt_$init "${ENCODER[@]}"
done
python benchmarks/plot_wer_curves.py "$EXP/wer_curves.png" \
  "Transducer, SSL encoder=$EXP/rnnt_pretrained" "Transducer, scratch=$EXP/rnnt_scratch"
