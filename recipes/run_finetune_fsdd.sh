#!/usr/bin/env bash
# Fine-tune a NeMo Conformer-Transducer on FSDD digit strings with a new 64-piece tokenizer.
#
# Data: FSDD (../shared/data/fsdd); clips of one speaker joined with short silences into
# 2-4 digit strings (1,200 train, 120 dev, 120 test). The pre-trained model defaults to the
# parity fixture ../shared/fixtures/nemo/conformer_rnnt_bpe.nemo (random weights: the point is
# that the whole path - .nemo in, vocabulary change, fine-tuning, .nemo out - works and learns).
# Config: conf/finetune_transducer.yaml; validation greedy WER every 50 steps (the curve is
# EXP/learning_curve.png), final beam-search evaluation on the test strings.
#
#   bash recipes/run_finetune_fsdd.sh [PRETRAINED.nemo] [EXP_DIR] [extra overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
PRETRAINED=${1:-../shared/fixtures/nemo/conformer_rnnt_bpe.nemo}
EXP=${2:-exp/finetune_fsdd}
shift $(( $# > 2 ? 2 : $# ))
FSDD=${FSDD:-../shared/data/fsdd}
. .venv/bin/activate
python -m myna.data.prepare.fsdd --fsdd-dir "$FSDD" --out-dir "$EXP/data" --strings 1200 --min-words 2 --max-words 4
myna tokenizer train --manifest "$EXP/data/strings_train/train.json" --vocab-size 64 --out-dir "$EXP/tokenizer_64"
myna train conf/finetune_transducer.yaml \
  name=finetune_fsdd \
  init_from_nemo_model="$PRETRAINED" \
  model.tokenizer.dir="$EXP/tokenizer_64" \
  model.train_ds.manifest_filepath="$EXP/data/strings_train/train.json" \
  model.validation_ds.manifest_filepath="$EXP/data/strings_dev/dev.json" \
  model.test_ds.manifest_filepath="$EXP/data/strings_test/test.json" \
  exp_manager.exp_dir="$EXP" "$@"
