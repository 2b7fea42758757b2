#!/usr/bin/env bash
# Hybrid ASR-TTS on FSDD: does text-only data, spoken by espeak-ng, teach a model trained on
# isolated digits to recognise digit strings?
#
# Both runs train the dummy ContextNet-Transducer (conf/contextnet_rnnt_dummy.yaml) for the same
# number of steps with the same tokenizer and seed:
#   fsdd_only: FSDD's isolated-digit training split (2,400 real utterances);
#   hybrid:    the same, plus text-only digit strings (2-5 digits) that espeak-ng speaks during
#              training (model.train_ds.text_data; mixed as NeMo's ConcatMapDataset, temperature 5).
# Both are tested on FSDD digit *strings*: 150 strings of 2-5 FSDD test clips (takes 0-4) joined
# with short silences (real voices; the clips are never heard in training). Then `myna lm train`
# builds a 3-gram on the 300 text-only strings and beam search fuses it (--lm, weight 0.5 fixed in
# advance, not tuned).
#
#   bash recipes/run_hybrid_fsdd.sh [FSDD_DIR] [EXP_DIR] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
FSDD=${1:-../shared/data/fsdd}
EXP=${2:-exp/hybrid_fsdd}
STEPS=${3:-600}
. .venv/bin/activate
command -v espeak-ng >/dev/null || { echo "espeak-ng is needed: apt-get install espeak-ng" >&2; exit 1; }

myna data prepare fsdd --source "$FSDD" --out-dir "$EXP/fsdd"
myna tokenizer train --manifest "$EXP/fsdd/train.json" --vocab-size 32 --out-dir "$EXP/tokenizer"
python - "$EXP" <<'EOF'
import json, random, sys
from pathlib import Path
from myna.data.manifest import read_manifest
from myna.data.prepare.fsdd import make_digit_strings
exp = Path(sys.argv[1])
if not (exp / "test_strings" / "test.json").is_file():
    make_digit_strings(read_manifest(exp / "fsdd" / "test.json"), exp / "test_strings", 300, min_words=2,
                       max_words=5, seed=7, manifest_name="test.json")
    lines = (exp / "test_strings" / "test.json").read_text().splitlines()[:150]
    (exp / "test_strings" / "test150.json").write_text("\n".join(lines) + "\n")
words = "zero one two three four five six seven eight nine".split()
rng = random.Random(11)
with open(exp / "text_only.json", "w") as f:  # NeMo text-only records
    for _ in range(300):
        f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(2, 5)))}) + "\n")
EOF

for run in fsdd_only hybrid; do
  EXTRA=()
  if [ "$run" = hybrid ]; then  # the text-only strings, spoken by espeak-ng at FSDD's 8 kHz, cached
    EXTRA=(++model.train_ds.text_data.manifest_filepath="$EXP/text_only.json"
           ++model.train_ds.text_data.tts.backend=espeak ++model.train_ds.text_data.tts.sample_rate=8000
           ++model.train_ds.text_data.tts.cache_dir="$EXP/tts_cache")
  fi
  myna train conf/contextnet_rnnt_dummy.yaml \
    name="$run" \
    model.train_ds.manifest_filepath="$EXP/fsdd/train.json" \
    model.validation_ds.manifest_filepath="$EXP/fsdd/dev.json" \
    model.tokenizer.dir="$EXP/tokenizer" \
    trainer.max_steps="$STEPS" \
    trainer.enable_progress_bar=false \
    exp_manager.exp_dir="$EXP/$run" "${EXTRA[@]}"
done

myna lm train --manifest "$EXP/text_only.json" --out "$EXP/digits_3gram.arpa" --order 3 --tokenizer "$EXP/tokenizer"
for run in fsdd_only hybrid; do
  for decoding in greedy beam; do
    echo "== $run, $decoding"
    myna evaluate --model "$EXP/$run/$run.nemo" --manifest "$EXP/test_strings/test150.json" --decoding "$decoding"
  done
  echo "== $run, beam + LM"
  myna evaluate --model "$EXP/$run/$run.nemo" --manifest "$EXP/test_strings/test150.json" --decoding beam \
    --lm "$EXP/digits_3gram.arpa" --lm-weight "${LM_WEIGHT:-0.5}"
done
