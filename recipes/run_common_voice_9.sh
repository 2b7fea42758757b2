#!/usr/bin/env bash
# Conformer-Transducer large on Common Voice 9.0 (English): 4 epochs, about 400k optimizer steps.
#
# Data expected: NeMo JSON-lines manifests (audio_filepath, duration, text) under $DATA, as
# `myna data prepare common_voice --source CV_ROOT --out-dir $DATA` writes them:
#   $DATA/commonvoice_train_manifest.json, commonvoice_dev_manifest.json, commonvoice_test_manifest.json
# with 16 kHz audio (other rates are resampled on load). Utterances over 20 s are dropped by
# model.train_ds.max_duration (the count is logged).
# Config: conf/conformer_transducer_bpe_large.yaml with a 1024-piece BPE tokenizer trained from the training text
# (or pass model.tokenizer.dir=DIR), greedy validation every 80k steps, a checkpoint every
# 200k steps, bf16 mixed precision, and a beam-search evaluation of the final model.
#
#   DATA=/data/common_voice_9 bash recipes/run_common_voice_9.sh [EXP_DIR] [extra overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATA:?set DATA to the folder holding the manifests}"
EXP=${1:-exp/common_voice_9}
shift $(( $# > 0 ? 1 : 0 ))
. .venv/bin/activate
myna train conf/conformer_transducer_bpe_large.yaml \
  name=common_voice_9 \
  model.train_ds.manifest_filepath="$DATA/commonvoice_train_manifest.json" \
  model.validation_ds.manifest_filepath="$DATA/commonvoice_dev_manifest.json" \
  trainer.max_epochs=4 trainer.max_steps=400000 \
  trainer.val_check_interval=80000 exp_manager.checkpoint_every_n_steps=200000 \
  exp_manager.exp_dir="$EXP" "$@"
myna evaluate --model "$EXP/common_voice_9.nemo" --manifest "$DATA/commonvoice_test_manifest.json" \
  --decoding beam --beam-size 4 --output "$EXP/test_hypotheses.jsonl"
