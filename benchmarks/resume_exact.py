"""kill -9 and resume: does the interrupted run continue the uninterrupted run's loss curve?

For one data path (the plain manifest, or static duration buckets), this trains the dummy
ContextNet-Transducer twice with the same config and seed through the ``myna`` command:

1. uninterrupted, ``--steps`` steps;
2. the same command into a second folder, killed with SIGKILL once the checkpoint of step
   ``--kill-after`` exists and training has gone on past it, then run again unchanged (it resumes
   from ``last.ckpt``).

Then it compares the ``train_loss`` logged at every step after the resume (``metrics.csv``,
``log_every_n_steps=1``) and prints the largest absolute difference.

    python benchmarks/resume_exact.py --manifest data/fsdd/train.json --steps 600 --kill-after 300 \
        --out exp/resume_plain
    python benchmarks/resume_exact.py --manifest data/fsdd/train.json --steps 600 --kill-after 300 \
        --buckets 2 --out exp/resume_buckets
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def split_into_buckets(manifest: Path, out_dir: Path, buckets: int) -> list[Path]:
    """Equal-count duration buckets of ``manifest`` (shortest first), one manifest each."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows.sort(key=lambda r: r["duration"])
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for b in range(buckets):
        part = rows[b * len(rows) // buckets:(b + 1) * len(rows) // buckets]
        path = out_dir / f"bucket{b + 1}.json"
        path.write_text("".join(json.dumps(r) + "\n" for r in part))
        paths.append(path)
    return paths


def losses(exp: Path, version: int) -> dict[int, float]:
    """step -> train_loss from logs/version_N/metrics.csv."""
    out = {}
    with open(exp / "logs" / f"version_{version}" / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("train_loss"):
                out[int(row["step"])] = float(row["train_loss"])
    return out


def plot(path: Path, reference: dict[int, float], before: dict[int, float], resumed: dict[int, float],
         resumed_from: int, title: str) -> Path:
    """The uninterrupted curve, the killed run's steps and the resumed run's, on one axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(sorted(reference), [reference[s] for s in sorted(reference)], lw=3, alpha=0.35, label="uninterrupted")
    ax.plot(sorted(before), [before[s] for s in sorted(before)], lw=1, label="run killed with SIGKILL")
    ax.plot(sorted(resumed), [resumed[s] for s in sorted(resumed)], lw=1, ls="--", label="rerun (resumed)")
    ax.axvline(resumed_from, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="step", ylabel="train_loss", yscale="log", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--kill-after", type=int, default=300, help="kill once this step's checkpoint exists")
    parser.add_argument("--run-past", type=int, default=20, help="...and this many more steps were logged")
    parser.add_argument("--buckets", type=int, default=0, help="static duration buckets (0: plain manifest)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=0, help="model.train_ds.num_workers")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    # The tokenizer is trained once, up front, from the whole manifest: both runs read the same one.
    tokenizer = args.out / "tokenizer"
    if not (tokenizer / "tokenizer.model").is_file():
        subprocess.run([sys.executable, "-m", "myna.cli", "tokenizer", "train", "--manifest", str(args.manifest),
                        "--vocab-size", "32", "--out-dir", str(tokenizer)], check=True, stdout=subprocess.DEVNULL)
    if args.buckets:
        buckets = split_into_buckets(args.manifest, args.out / "buckets", args.buckets)
        data = [f"model.train_ds.manifest_filepath=[{','.join(f'[{p}]' for p in buckets)}]",
                f"++model.train_ds.bucketing_batch_size=[{','.join([str(args.batch_size)] * args.buckets)}]"]
    else:
        data = [f"model.train_ds.manifest_filepath={args.manifest}"]

    def command(exp: Path) -> list[str]:
        return [sys.executable, "-m", "myna.cli", "train", str(REPO / "conf" / "contextnet_rnnt_dummy.yaml"), *data,
                f"model.train_ds.batch_size={1 if args.buckets else args.batch_size}",  # buckets: their own sizes
                f"model.train_ds.num_workers={args.workers}",
                f"trainer.max_steps={args.steps}", "trainer.log_every_n_steps=1",
                f"exp_manager.checkpoint_every_n_steps={args.kill_after}", "trainer.limit_val_batches=0",
                "trainer.enable_progress_bar=false", "exp_manager.plot_learning_curve=false",
                f"model.tokenizer.dir={tokenizer}", f"exp_manager.exp_dir={exp}"]

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    whole, killed = args.out / "uninterrupted", args.out / "interrupted"
    started = time.time()
    with open(args.out / "uninterrupted.log", "w") as log:
        subprocess.run(command(whole), check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    print(f"uninterrupted: {args.steps} steps in {time.time() - started:.0f} s", flush=True)

    with open(args.out / "interrupted.log", "w") as log:
        proc = subprocess.Popen(command(killed), stdout=log, stderr=subprocess.STDOUT, env=env)
        ckpt = killed / "checkpoints" / f"step{args.kill_after}.ckpt"
        metrics = killed / "logs" / "version_0" / "metrics.csv"
        while proc.poll() is None:
            if ckpt.is_file() and metrics.is_file():
                try:
                    seen = max(losses(killed, 0), default=-1)
                except (OSError, ValueError, KeyError):
                    seen = -1
                if seen >= args.kill_after + args.run_past:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.2)
        proc.wait()
    if proc.returncode != -signal.SIGKILL:
        raise SystemExit(f"the run to kill ended by itself (rc {proc.returncode}); lower --kill-after")
    before = losses(killed, 0)
    print(f"killed with SIGKILL at logged step {max(before)} (checkpoint of step {args.kill_after} on disk)")
    with open(args.out / "resumed.log", "w") as log:
        subprocess.run(command(killed), check=True, stdout=log, stderr=subprocess.STDOUT, env=env)

    reference, resumed = losses(whole, 0), losses(killed, 1)
    steps = sorted(resumed)
    missing = [s for s in range(args.kill_after, args.steps) if s not in resumed]
    diffs = [abs(resumed[s] - reference[s]) for s in steps]
    before_diffs = [abs(before[s] - reference[s]) for s in before if s < args.kill_after]
    path = "buckets" if args.buckets else "plain manifest"
    summary = {"path": path, "steps": args.steps, "resumed_from": args.kill_after, "killed_at": max(before),
               "compared_steps": len(steps), "first": steps[0] if steps else None, "last": steps[-1] if steps else None,
               "missing_steps": missing, "max_abs_diff_after_resume": max(diffs) if diffs else None,
               "max_abs_diff_before_kill": max(before_diffs) if before_diffs else None}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(args.out / "resume_curve.png", reference, before, resumed, args.kill_after,
         f"{path}: kill -9 after step {max(before)}, resumed from {args.kill_after}; "
         f"max |diff| {summary['max_abs_diff_after_resume']:.1e}")
    print(json.dumps(summary))
    return 0 if diffs and max(diffs) <= 1e-6 and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
