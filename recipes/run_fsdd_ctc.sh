#!/usr/bin/env bash
# Small Conformer-CTC (conf/conformer_ctc_small.yaml, ~1.6M parameters) on FSDD, the same data
# and splits as run_fsdd.sh; the final test pass uses the CTC prefix beam search, then the test
# split is scored with ctc_greedy and ctc_beam.   bash recipes/run_fsdd_ctc.sh [FSDD_DIR] [EXP_DIR] [overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
FSDD=${1:-../shared/data/fsdd} EXP=${2:-exp/fsdd_ctc}
shift $(( $# > 2 ? 2 : $# ))
. .venv/bin/activate
M=$EXP/manifests
myna data prepare fsdd --source "$FSDD" --out-dir "$M"
myna train conf/conformer_ctc_small.yaml \
  name=fsdd_ctc \
  model.train_ds.manifest_filepath=$M/train.json \
  model.validation_ds.manifest_filepath=$M/dev.json \
  model.test_ds.manifest_filepath=$M/test.json \
  exp_manager.exp_dir="$EXP" "$@"
for decoding in ctc_greedy ctc_beam; do
  myna evaluate --model "$EXP" --manifest "$M/test.json" --decoding $decoding --output "$EXP/test_$decoding.jsonl"
done
