#!/usr/bin/env bash
# The main job on the bundled default: train the dummy ContextNet-Transducer on the bundled
# espeak digit-string corpus, evaluate it on the held-out split, transcribe one file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
EXP=${EXP:-exp/contextnet_rnnt_dummy}
DATA=data/espeak_digits
myna train conf/contextnet_rnnt_dummy.yaml \
  model.train_ds.manifest_filepath=$DATA/train.json \
  model.validation_ds.manifest_filepath=$DATA/dev.json \
  exp_manager.exp_dir=$EXP "$@"
myna evaluate --model $EXP/contextnet_rnnt_dummy.nemo --manifest $DATA/test.json --output $EXP/test_hypotheses.jsonl
AUDIO=$(python -c "import json; e=json.loads(open('$DATA/test.json').readline()); print('$DATA/' + e['audio_filepath'])")
myna transcribe --model $EXP/contextnet_rnnt_dummy.nemo "$AUDIO"
