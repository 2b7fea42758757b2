#!/usr/bin/env bash
# wav2vec 2.0 on a CPU: pre-train the tiny encoder (conf/wav2vec2_tiny.yaml, ~1M parameters) on
# unlabelled audio (FSDD train, the bundled espeak-ng digits, the AN4 subset), then fine-tune it
# with 10% of FSDD's training labels (270 utterances) into CTC and into a Transducer, each against
# the same model trained from scratch (same recipe, steps and seed); WER curves in
# $EXP/wer_curves.png, test WERs printed by each run.
#   bash recipes/run_wav2vec2_fsdd.sh [SHARED_DATA] [EXP_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data} EXP=${2:-exp/w2v2_fsdd}
. .venv/bin/activate
M=$EXP/manifests
bash recipes/common/fsdd_ssl_data.sh "$DATA" "$M"
myna pretrain conf/wav2vec2_tiny.yaml \
  model.train_ds.manifest_filepath=[$M/train.json,data/espeak_digits/train.json,$M/an4_audio.json] \
  model.validation_ds.manifest_filepath=data/espeak_digits/dev.json \
  exp_manager.exp_dir=$EXP/pretrain
for init in pretrained scratch; do
  ENCODER=()
  if [ $init = pretrained ]; then
    ENCODER=(init_from_pretrained_model.w2v.path=$EXP/pretrain "init_from_pretrained_model.w2v.include=[encoder]")
  fi
  myna train conf/wav2vec2_tiny_ctc.yaml \
    model.train_ds.manifest_filepath=$M/train_10pct.json \
    model.validation_ds.manifest_filepath=$M/dev.json \
    model.test_ds.manifest_filepath=$M/test.json \
    exp_manager.exp_dir=$EXP/ctc_$init "${ENCODER[@]}"
  myna train conf/wav2vec2_tiny_rnnt.yaml \
    model.train_ds.manifest_filepath=$M/train_10pct.json \
    model.validation_ds.manifest_filepath=$M/dev.json \
    model.test_ds.manifest_filepath=$M/test.json \
    exp_manager.exp_dir=$EXP/rnnt_$init "${ENCODER[@]}"
done
python benchmarks/plot_wer_curves.py "$EXP/wer_curves.png" \
  "CTC, pre-trained=$EXP/ctc_pretrained" "CTC, scratch=$EXP/ctc_scratch" \
  "Transducer, pre-trained=$EXP/rnnt_pretrained" "Transducer, scratch=$EXP/rnnt_scratch"
