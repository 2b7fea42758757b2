#!/usr/bin/env bash
# Dummy ContextNet-Transducer on the Free Spoken Digit Dataset (real speech, 8 kHz, 6 speakers).
#
# Data: FSDD as kept in ../shared/data/fsdd (recordings/ + splits/{train,test}.tsv). The official
# test split (takes 0-4) is the test set; takes 5-9 are held out of training as the dev set.
# Config: conf/contextnet_rnnt_dummy.yaml (~0.5M parameters), BPE tokenizer trained on the
# training text, greedy validation, final evaluation on the test split.
#
#   bash recipes/run_fsdd.sh [FSDD_DIR] [EXP_DIR] [extra overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
FSDD=${1:-../shared/data/fsdd}
EXP=${2:-exp/fsdd_dummy}
shift $(( $# > 2 ? 2 : $# ))
. .venv/bin/activate
myna data prepare fsdd --source "$FSDD" --out-dir "$EXP/manifests"
myna train conf/contextnet_rnnt_dummy.yaml \
  name=fsdd_dummy \
  model.train_ds.manifest_filepath="$EXP/manifests/train.json" \
  model.validation_ds.manifest_filepath="$EXP/manifests/dev.json" \
  model.test_ds.manifest_filepath="$EXP/manifests/test.json" \
  model.tokenizer.vocab_size=32 \
  exp_manager.exp_dir="$EXP" "$@"
myna evaluate --model "$EXP/fsdd_dummy.nemo" --manifest "$EXP/manifests/test.json" --output "$EXP/test_hypotheses.jsonl"
