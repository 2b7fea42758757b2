"""Validation WER against the step for several ``myna train`` runs, in one PNG.

    python benchmarks/plot_wer_curves.py OUT.png "LABEL=RUN_DIR" ["LABEL=RUN_DIR" ...]

Each run's ``logs/version_*/metrics.csv`` (resumed runs included) gives ``val_wer``; the label
shows the last value.
"""

from __future__ import annotations

import sys
from pathlib import Path

from myna.training.plots import read_metrics


def main(argv: list[str]) -> None:
    if len(argv) < 2 or any("=" not in a for a in argv[1:]):
        raise SystemExit(__doc__)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for spec in argv[1:]:
        label, run = spec.split("=", 1)
        csvs = sorted(Path(run).glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
        series = read_metrics(csvs).get("val_wer") if csvs else None
        if not series:
            print(f"{run}: no val_wer logged; skipped", file=sys.stderr)
            continue
        steps, values = zip(*series)
        ax.plot(steps, [100 * v for v in values], "o-" if "pre" in label else "s--", markersize=3,
                label=f"{label} ({100 * values[-1]:.1f}% at step {steps[-1]})")
    ax.set_xlabel("step")
    ax.set_ylabel("validation WER (%)")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(argv[0], dpi=100)
    print(argv[0])


if __name__ == "__main__":
    main(sys.argv[1:])
