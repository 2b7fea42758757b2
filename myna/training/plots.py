"""Learning-curve plot from Lightning's CSV log (loss and WER per step) to a PNG."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

__all__ = ["read_metrics", "plot_learning_curve"]


def read_metrics(metrics_csvs: str | Path | Sequence[str | Path]) -> dict[str, list[tuple[int, float]]]:
    """Series name -> [(step, value)] sorted by step, from one or several Lightning ``metrics.csv``
    (a resumed run writes a new file; later files win for steps they repeat)."""
    if isinstance(metrics_csvs, (str, Path)):
        metrics_csvs = [metrics_csvs]
    merged: dict[str, dict[int, float]] = {}
    for metrics_csv in metrics_csvs:
        with open(metrics_csv, newline="") as handle:
            for row in csv.DictReader(handle):
                step = row.get("step")
                if step in (None, ""):
                    continue
                for key, value in row.items():
                    if key in ("step", "epoch") or value in (None, ""):
                        continue
                    merged.setdefault(key, {})[int(step)] = float(value)
    return {key: sorted(values.items()) for key, values in merged.items()}


def plot_learning_curve(metrics_csv: str | Path | Sequence[str | Path], png_path: str | Path) -> Path:
    """Plot training loss (left axis) and validation WER in % (right axis) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_metrics(metrics_csv)
    fig, ax_loss = plt.subplots(figsize=(8, 4.5))
    if "train_loss" in series:
        steps, values = zip(*series["train_loss"])
        ax_loss.plot(steps, values, color="tab:blue", alpha=0.8, label="train loss")
    if "val_loss" in series:
        steps, values = zip(*series["val_loss"])
        ax_loss.plot(steps, values, "o-", color="tab:cyan", label="validation loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("RNN-T loss (nats / utterance)")
    ax_loss.set_yscale("log")
    ax_wer = ax_loss.twinx()
    if "val_wer" in series:
        steps, values = zip(*series["val_wer"])
        ax_wer.plot(steps, [100 * v for v in values], "s-", color="tab:red", label="validation WER")
    ax_wer.set_ylabel("WER (%)")
    handles = ax_loss.get_legend_handles_labels()[0] + ax_wer.get_legend_handles_labels()[0]
    ax_loss.legend(handles, [h.get_label() for h in handles], loc="upper right")
    ax_loss.set_title("learning curve")
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
