#!/usr/bin/env bash
# Small Conformer-CTC on the Free Spoken Digit Dataset (real speech, 8 kHz, 6 speakers).
#
# Data: FSDD as kept in ../shared/data/fsdd (recordings/ + splits/{train,test}.tsv). The official
# test split (takes 0-4) is the test set; takes 5-9 are held out of training as the dev set.
# Config: conf/conformer_ctc_small.yaml (~1.6M parameters), BPE tokenizer trained on the training
# text, greedy validation, final evaluation with the CTC prefix beam search, then the test split
# decoded with ctc_greedy and ctc_beam.
#
#   bash recipes/run_fsdd_ctc.sh [FSDD_DIR] [EXP_DIR] [extra overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
FSDD=${1:-../shared/data/fsdd}
EXP=${2:-exp/fsdd_ctc}
shift $(( $# > 2 ? 2 : $# ))
. .venv/bin/activate
myna data prepare fsdd --source "$FSDD" --out-dir "$EXP/manifests"
myna train conf/conformer_ctc_small.yaml \
  name=fsdd_ctc \
  model.train_ds.manifest_filepath="$EXP/manifests/train.json" \
  model.validation_ds.manifest_filepath="$EXP/manifests/dev.json" \
  model.test_ds.manifest_filepath="$EXP/manifests/test.json" \
  exp_manager.exp_dir="$EXP" "$@"
for decoding in ctc_greedy ctc_beam; do
  myna evaluate --model "$EXP" --manifest "$EXP/manifests/test.json" --decoding "$decoding" \
    --output "$EXP/test_hypotheses_$decoding.jsonl"
done
