#!/usr/bin/env bash
# The dummy ContextNet-Transducer (~0.5M parameters) on the bundled espeak-ng digit strings
# (data/espeak_digits: 800 train / 100 dev / 100 test utterances, 8 kHz FLAC). The schedule
# mirrors the large recipes in miniature: greedy validation during training, a beam-search
# evaluation of the final model. This is also what `bash scripts/main.sh` runs (greedy only).
#
#   bash recipes/run_dummy.sh [EXP_DIR] [extra overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
EXP=${1:-exp/dummy}
shift $(( $# > 0 ? 1 : 0 ))
DATA=data/espeak_digits
. .venv/bin/activate
myna train conf/contextnet_rnnt_dummy.yaml \
  model.train_ds.manifest_filepath=$DATA/train.json \
  model.validation_ds.manifest_filepath=$DATA/dev.json \
  exp_manager.exp_dir="$EXP" "$@"
myna evaluate --model "$EXP/contextnet_rnnt_dummy.nemo" --manifest $DATA/test.json \
  --decoding beam --beam-size 4 --output "$EXP/test_hypotheses.jsonl"
