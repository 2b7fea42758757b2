#!/usr/bin/env bash
# The data of the self-supervised FSDD recipes (run_wav2vec2_fsdd.sh, run_ssl_fsdd.sh): FSDD
# manifests, the 10% label subset (270 of the training clips: a seeded shuffle, kept in manifest
# order) and the AN4 subset's audio as an unlabelled manifest.
#   bash recipes/common/fsdd_ssl_data.sh SHARED_DATA MANIFEST_DIR
set -euo pipefail
DATA=$1 M=$2
myna data prepare fsdd --source "$DATA/fsdd" --out-dir "$M"
python - "$M" "$DATA/an4_nemo_subset" <<'PY'
import json, random, sys
from pathlib import Path
import soundfile as sf
out, an4 = Path(sys.argv[1]), Path(sys.argv[2])
lines = (out / "train.json").read_text().splitlines()
order = list(range(len(lines)))
random.Random(0).shuffle(order)
keep = sorted(order[:270])  # the issues' 10%: 270 of the 2,700 labelled train + dev clips, from train
(out / "train_10pct.json").write_text("".join(lines[i] + "\n" for i in keep))
wavs = sorted(an4.rglob("*.wav"))
(out / "an4_audio.json").write_text("".join(json.dumps({"audio_filepath": str(p.resolve()),
    "duration": sf.info(p).duration}) + "\n" for p in wavs))
PY
