"""Learning-curve plot from Lightning's CSV log (loss and WER per step) to a PNG."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

__all__ = ["read_metrics", "plot_learning_curve", "plot_pretraining_curve"]


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


def plot_pretraining_curve(metrics_csv: str | Path | Sequence[str | Path], png_path: str | Path,
                           num_codevectors: int | None = None) -> Path:
    """Four panels of a self-supervised run against the step: the losses (train and validation),
    contrastive accuracy, codebook perplexity (a dashed line at a quarter of G*V: collapse
    below it), and the Gumbel temperature with the masked-frame count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_metrics(metrics_csv)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))

    def draw(ax, key, label, style="-", **kw):
        if key in series:
            steps, values = zip(*series[key])
            ax.plot(steps, values, style, label=label, **kw)
            return True
        return False

    ax = axes[0, 0]
    # A NeMo-style loss_list logs each loss as loss_<name>, on scales far apart: one line each, log axis.
    entries = sorted(k[len("train_loss_"):] for k in series if k.startswith("train_loss_"))
    draw(ax, "train_loss", "train loss" if not entries else "train total", alpha=0.8)
    draw(ax, "train_contrastive_loss", "train contrastive", alpha=0.6)
    draw(ax, "val_loss", "validation loss" if not entries else "validation total", "o-")
    for i, name in enumerate(entries):
        color = f"C{i + 2}"
        draw(ax, f"train_loss_{name}", f"train {name}", alpha=0.6, color=color)
        draw(ax, f"val_loss_{name}", f"validation {name}", "o--", color=color)
    if entries:
        ax.set_yscale("log")
    ax.set_ylabel("loss per masked frame" if not entries else "loss (each of the loss_list, unweighted)")
    ax.set_title("losses")
    ax = axes[0, 1]
    draw(ax, "train_accuracy", "train", alpha=0.8)
    draw(ax, "val_accuracy", "validation", "o-")
    ax.set_ylabel("fraction of masked frames")
    ax.set_title("contrastive accuracy (positive ranked first)")
    ax = axes[1, 0]
    draw(ax, "train_prob_perplexity", "softmax (train)", alpha=0.8)
    draw(ax, "train_code_perplexity", "argmax codes (train)", alpha=0.6)
    draw(ax, "val_code_perplexity", "argmax codes (validation)", "o-")
    if num_codevectors:
        ax.axhline(num_codevectors / 4, color="gray", linestyle="--", label=f"G*V/4 = {num_codevectors / 4:g}")
        ax.axhline(num_codevectors, color="gray", linestyle=":", label=f"G*V = {num_codevectors}")
    ax.set_ylabel("perplexity (summed over groups)")
    ax.set_title("codebook use")
    ax = axes[1, 1]
    draw(ax, "train_temperature", "Gumbel temperature", color="tab:purple")
    ax.set_ylabel("temperature")
    ax.set_title("temperature and masked frames")
    twin = ax.twinx()
    if draw(twin, "train_num_masked", "masked frames / batch", color="tab:green", alpha=0.5):
        twin.set_ylabel("masked frames per batch")
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles, [h.get_label() for h in handles], loc="upper right", fontsize=8)
    for panel in (axes[0, 0], axes[0, 1], axes[1, 0]):
        panel.set_xlabel("step")
        if panel.get_legend_handles_labels()[0]:
            panel.legend(fontsize=8)
    axes[1, 1].set_xlabel("step")
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
