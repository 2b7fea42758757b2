#!/usr/bin/env bash
# Conformer-Transducer large on Switchboard-1 (train), Hub5'00 (eval): 14 epochs, about 400k optimizer steps.
#
# Data expected: NeMo JSON-lines manifests (audio_filepath, duration, text), as the preparers write them:
#   $DATA/train.json, $DATA/dev.json    (myna data prepare switchboard --source SWBD --out-dir $DATA)
#   $HUB5/manifest_hub5.json            (myna data prepare hub5 --source HUB5_ROOT --out-dir $HUB5; default $DATA/hub5)
# with 16 kHz audio (other rates are resampled on load). Utterances over 20 s are dropped by
# model.train_ds.max_duration (the count is logged).
# Config: conf/conformer_transducer_bpe_large.yaml with a 1024-piece BPE tokenizer trained from the training text
# (or pass model.tokenizer.dir=DIR), greedy validation every 80k steps, a checkpoint every
# 200k steps, bf16 mixed precision, and a beam-search evaluation of the final model.
#
#   DATA=/data/switchboard bash recipes/run_switchboard.sh [EXP_DIR] [extra overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATA:?set DATA to the folder holding the manifests}"
HUB5=${HUB5:-$DATA/hub5}
EXP=${1:-exp/switchboard}
shift $(( $# > 0 ? 1 : 0 ))
. .venv/bin/activate
myna train conf/conformer_transducer_bpe_large.yaml \
  name=switchboard \
  model.train_ds.manifest_filepath="$DATA/train.json" \
  model.validation_ds.manifest_filepath="$DATA/dev.json" \
  trainer.max_epochs=14 trainer.max_steps=400000 \
  trainer.val_check_interval=80000 exp_manager.checkpoint_every_n_steps=200000 \
  exp_manager.exp_dir="$EXP" "$@"
myna evaluate --model "$EXP/switchboard.nemo" --manifest "$HUB5/manifest_hub5.json" \
  --decoding beam --beam-size 4 --output "$EXP/test_hypotheses.jsonl"
