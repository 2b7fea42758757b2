"""Self-supervised pre-training under the one trainer: the Lightning task and the data checks.

:class:`PretrainingTask` optimises the ``loss`` a pre-training model returns and logs every
other scalar it returns (for wav2vec 2.0: contrastive accuracy, codebook perplexities,
Gumbel temperature, masked-frame count, the loss terms) per step in training and averaged over
the validation set. :func:`check_durations` finds utterances too short for the model's mask
spans before training starts, so they are an error naming them (or a counted skip when the
dataset's ``min_duration`` filter already removes them) rather than a crash in the loss.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional, Sequence

import lightning as L
import torch

from myna.training.module import optimizer_and_schedule

__all__ = ["PretrainingTask", "check_durations", "check_loaders", "SSL_CURVE_KEYS"]

log = logging.getLogger("myna.pretrain")

# What the learning curve of a pre-training run shows (when the model reports it).
SSL_CURVE_KEYS = ("accuracy", "prob_perplexity", "code_perplexity", "temperature", "num_masked")


class PretrainingTask(L.LightningModule):
    """Trains a model whose ``forward(audio, audio_lengths, step=...)`` returns a dict of scalars
    with ``loss``; logs ``train_<key>`` every step and ``val_<key>`` (means over the validation
    set, weighted by ``num_masked`` when reported) at each validation.

    :param model: e.g. :class:`myna.models.wav2vec2.Wav2Vec2PreTrainingModel`.
    :param optim: ``model.optim`` (name, lr, betas, ..., sched).
    :param max_steps: for the schedule (None: epochs x batches, from the trainer).
    :param describe_rows: dataset index -> a name for an utterance (``manifest:line``), used
        when a batch row turns out too short (default: from the data module's training set).
    :param model_cfg: the ``model`` section; with it, the data module's loaders are checked for
        utterances too short for the model when fitting starts (:func:`check_loaders`).
    """

    def __init__(self, model: torch.nn.Module, optim: Mapping[str, Any], max_steps: Optional[int],
                 describe_rows: Optional[Callable[[int], str]] = None, model_cfg: Optional[Mapping] = None):
        super().__init__()
        self.model_cfg = model_cfg
        self.model = model
        self.optim_cfg = dict(optim)
        self.max_steps = max_steps
        self.describe_rows = describe_rows
        self._val_sums: dict[str, float] = {}
        self._val_weight = 0.0
        quantizer = getattr(model, "quantizer", None)
        # G*V, for the curve's collapse line (NeMo-style SSL models name their first quantizer's)
        self.num_codevectors = getattr(quantizer, "num_codevectors", None) or getattr(model, "num_codevectors", None)

    def _forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        try:
            return self.model(batch["audio"], batch["audio_lengths"], step=self.global_step)
        except ValueError as err:
            rows = getattr(err, "rows", None)
            if rows is None or "indices" not in batch or self.describe_rows is None:
                raise
            names = [self.describe_rows(int(batch["indices"][r])) for r in rows]
            raise ValueError(f"{err} -- utterance(s): {', '.join(names)}") from err

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self._forward(batch)
        batch_size = batch["audio"].shape[0]
        for key, value in out.items():
            self.log(f"train_{key}" if key != "loss" else "train_loss", value.detach().float(),
                     prog_bar=key in ("loss", "accuracy"), batch_size=batch_size)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=batch_size)
        return out["loss"]

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        # Validation masks and negatives are a function of the batch number, so every validation
        # scores the same draws and the curve compares like with like.
        out = self.model(batch["audio"], batch["audio_lengths"], step=batch_idx)
        weight = float(out.get("num_masked", torch.tensor(1.0)))
        for key, value in out.items():
            self._val_sums[key] = self._val_sums.get(key, 0.0) + float(value) * weight
        self._val_weight += weight

    def on_validation_epoch_end(self) -> None:
        if self._val_weight:
            for key, total in self._val_sums.items():
                self.log(f"val_{key}" if key != "loss" else "val_loss", total / self._val_weight,
                         prog_bar=key in ("loss", "accuracy"))
        self._val_sums, self._val_weight = {}, 0.0

    def configure_optimizers(self):
        return optimizer_and_schedule(self.model, self.optim_cfg,
                                      self.max_steps or int(self.trainer.estimated_stepping_batches))

    def on_fit_start(self) -> None:
        data = getattr(self.trainer, "datamodule", None)
        if data is not None and self.model_cfg is not None:
            describe = check_loaders(self.model, self.model_cfg, data.train_loader, data.val_loader)
            self.describe_rows = self.describe_rows or describe


def check_durations(entries: Sequence, min_seconds: float, section: str, min_duration_filter: Optional[float],
                    limit: int = 5) -> None:
    """Fail early, naming them, when utterances are shorter than a pre-training model can use.

    :param entries: manifest entries (``duration``, ``where``) after the dataset's filters.
    :param min_seconds: the model's shortest usable duration.
    :param section: ``model.train_ds`` / ``model.validation_ds`` for the message.
    :param min_duration_filter: the section's ``min_duration`` (named in the hint).
    :raises ValueError: listing the first ``limit`` short utterances, their count, the shortest
        usable duration and the filter that would skip (and count) them.
    """
    short = [e for e in entries if 0 < e.duration < min_seconds]
    if not short:
        return
    listed = ", ".join(f"{e.where} ({e.duration:.3f} s)" for e in short[:limit])
    more = f" and {len(short) - limit} more" if len(short) > limit else ""
    raise ValueError(
        f"{section}: {len(short)} utterance(s) are shorter than {min_seconds:.4f} s, the shortest this model's "
        f"mask spans and negatives can use: {listed}{more}. Set {section}.min_duration={min_seconds:.4f} "
        f"(now {min_duration_filter}) to skip them (the filter counts what it drops), or shorten the mask spans.")


def check_loaders(model: torch.nn.Module, model_cfg: Mapping, train_loader, val_loader=None):
    """Check that every utterance the loaders hold is long enough for the model (see
    :func:`check_durations`; loaders that do not list their entries up front, such as Lhotse's,
    are checked per batch). Returns dataset index -> utterance name for the training set, or None."""
    min_seconds = model.min_duration() if hasattr(model, "min_duration") else 0.0
    sections = (("model.train_ds", train_loader, "train_ds"), ("model.validation_ds", val_loader, "validation_ds"))
    for section, loader, key in sections:
        entries = getattr(getattr(loader, "dataset", None), "entries", None)
        if entries is not None and min_seconds:
            check_durations(entries, min_seconds, section, (model_cfg.get(key) or {}).get("min_duration"))
    dataset = getattr(train_loader, "dataset", None)
    return (lambda i: dataset.entries[i].where) if hasattr(dataset, "entries") else None

