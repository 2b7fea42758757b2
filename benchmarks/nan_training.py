"""Training with 10% NaN files: does it finish, name and count them, and reach the clean WER?

Writes a copy of a training manifest in which every ``--every``-th utterance (10% by default)
points to a float WAV of the same length full of NaN, then trains the dummy ContextNet-Transducer
through the ``myna`` command on the clean and on the poisoned manifest (same config and seed) and
prints, for each run, the final test WER and the bad utterances the run reported.

    python benchmarks/nan_training.py --train data/fsdd/train.json --test data/fsdd/test.json \
        --steps 600 --out exp/nan_training
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent


def poison(manifest: Path, out_dir: Path, every: int) -> tuple[Path, int]:
    """The manifest with every ``every``-th entry's audio replaced by NaN samples."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    bad = 0
    for i, row in enumerate(rows):
        if i % every == every - 1:
            path = (out_dir / f"nan_{i}.wav").resolve()
            sf.write(path, np.full(max(1, int(16000 * row["duration"])), np.nan, "float32"), 16000, subtype="FLOAT")
            row["audio_filepath"] = str(path)
            bad += 1
        elif not Path(row["audio_filepath"]).is_absolute():
            row["audio_filepath"] = str((manifest.parent / row["audio_filepath"]).resolve())
    poisoned = out_dir / "train_nan.json"
    poisoned.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return poisoned, bad


def train(manifest: Path, test: Path, exp: Path, args) -> dict:
    command = [sys.executable, "-m", "myna.cli", "train", str(REPO / "conf" / "contextnet_rnnt_dummy.yaml"),
               f"model.train_ds.manifest_filepath={manifest}", f"model.test_ds.manifest_filepath={test}",
               f"model.train_ds.batch_size={args.batch_size}", f"trainer.max_steps={args.steps}",
               "trainer.limit_val_batches=0", "trainer.enable_progress_bar=false", "model.decoding.final_strategy=greedy",
               f"exp_manager.exp_dir={exp}", f"seed={args.seed}"]
    log = exp.with_suffix(".log")
    exp.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        rc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode
    text = log.read_text()
    wer = re.search(r"^test .*: WER: ([\d.]+)%", text, re.M)
    summary = re.search(r"training skipped (\d+) utterance\(s\) with bad audio", text)
    named = sorted(set(re.findall(r"skipped utterance (\S+): audio file", text)))
    return {"rc": rc, "test_wer": float(wer.group(1)) if wer else None,
            "bad_utterances_reported": int(summary.group(1)) if summary else 0, "named": len(named),
            "first_named": named[:3], "log": str(log)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True, type=Path)
    parser.add_argument("--test", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--every", type=int, default=10, help="poison every N-th utterance (10: 10%%)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--only", choices=["clean", "nan"], help="run one of the two")
    args = parser.parse_args()

    poisoned, bad = poison(args.train, args.out / "nan_audio", args.every)
    print(f"{bad} of {sum(1 for _ in open(args.train))} utterances replaced by NaN audio", flush=True)
    results = {}
    for name, manifest in (("clean", args.train), ("nan", poisoned)):
        if args.only and name != args.only:
            continue
        results[name] = train(manifest, args.test, args.out / name, args)
        print(name, json.dumps(results[name]), flush=True)
    (args.out / f"summary{'_' + args.only if args.only else ''}.json").write_text(json.dumps(
        {"poisoned": bad, **results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
