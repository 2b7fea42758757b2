"""Training that survives a bad utterance or a bad batch, and says what it passed over.

Two things are guarded, both counted, logged with the utterances' names and kept in checkpoints:

- **Bad audio** (missing, undecodable, empty, NaN/inf samples, shorter than the manifest says) is
  found where the audio is decoded (:func:`myna.audio.load_audio`); the loader turns it into a
  skip item and the batch carries it in ``batch["skipped"]`` as ``(utterance id, reason)``
  pairs (:func:`myna.data.loader.collate_audio_text`). The guard logs and counts each one; the
  rest of the batch trains. An epoch in which every utterance was skipped stops the run.
- **Non-finite losses and gradients**: a batch whose loss is NaN/inf (or whose loss inputs are,
  :class:`myna.losses.NonFiniteError`), or, with ``trainer.skip_nan_grad`` (NeMo's switch), whose
  gradients are, gets no update; it is logged with its utterance ids and counted. More than
  ``trainer.max_skipped_batches`` such batches (-1: no limit) stop the run with an error naming
  the last ones. With ``skip_nan_grad: false`` the first non-finite loss stops the run.

Both keys are myna's, in the ``trainer`` section, and are taken out before Lightning sees it
(:func:`pop_guard_options`).

>>> guard = TrainingGuard(skip_nan_grad=True, max_skipped_batches=20)
>>> trainer = L.Trainer(callbacks=[guard, ...]); task.guard = guard
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping

import lightning as L
import torch

from myna.losses import NonFiniteError

__all__ = ["TrainingGuard", "TrainingAborted", "pop_guard_options", "GUARD_DEFAULTS"]

log = logging.getLogger("myna.train")

GUARD_DEFAULTS = {"skip_nan_grad": True, "max_skipped_batches": 20}


class TrainingAborted(ValueError):
    """The run cannot go on: too many non-finite batches, or no usable utterance in an epoch."""


def pop_guard_options(trainer_kwargs: dict) -> dict:
    """Remove myna's guard keys from the ``trainer`` section (Lightning does not know them)."""
    return {key: trainer_kwargs.pop(key, default) for key, default in GUARD_DEFAULTS.items()}


def _ids(batch: Mapping[str, Any], limit: int = 8) -> str:
    ids = list(batch.get("ids") or [])
    if not ids:
        return f"{int(batch['audio'].shape[0])} utterances (no ids)" if "audio" in batch else "no utterances"
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


class TrainingGuard(L.Callback):
    """Counts and names what training passes over; skips non-finite updates; stops past a limit.

    Args:
        skip_nan_grad: skip a batch whose loss or gradients are NaN/inf (False: stop at the
            first non-finite loss).
        max_skipped_batches: stop when more batches than this were skipped (-1: never).
    """

    def __init__(self, skip_nan_grad: bool = True, max_skipped_batches: int = 20):
        super().__init__()
        self.skip_nan_grad = bool(skip_nan_grad)
        self.max_skipped_batches = int(max_skipped_batches)
        self.bad_utterances: dict[str, str] = {}  # id -> reason, over the whole run
        self.skipped_batches = 0
        self._epoch_trained = 0
        self._epoch_bad = 0
        self._drop_next_step = False

    # -- called by the training module
    def drop_next_step(self, reason: str | None) -> None:
        """Drop the gradients of the coming optimizer step (a batch another rank skipped; ``reason``
        is logged when this rank's own batch was fine, None when this rank already counted it)."""
        self._drop_next_step = True
        if reason is not None:
            self._epoch_trained -= 1
            log.warning("%s: update skipped on every rank", reason)

    def forward(self, task: L.LightningModule, batch: Mapping[str, Any]) -> dict[str, torch.Tensor] | None:
        """The model's outputs on ``batch`` (a dict with ``loss``), or None when the batch gets no
        update: nothing usable in it, or a non-finite loss (counted; the run stops past the limit)."""
        if not self.admit(batch):
            return None
        try:
            out = task.model(batch["audio"], batch["audio_lengths"], batch["tokens"], batch["token_lengths"],
                             step=task.global_step)
        except NonFiniteError as err:
            self.loss_ok(None, batch, task.global_step, error=err)
            return None
        return out if self.loss_ok(out["loss"], batch, task.global_step) else None

    def admit(self, batch: Mapping[str, Any], stage: str = "train") -> bool:
        """Log and count the batch's skipped utterances; False when nothing is left to train on."""
        for utterance, reason in batch.get("skipped", ()):
            if stage == "train":
                self._epoch_bad += 1
                if utterance not in self.bad_utterances:
                    self.bad_utterances[utterance] = reason
                log.warning("skipped utterance %s: %s (%d bad utterance(s) so far)", utterance, reason,
                            len(self.bad_utterances))
            else:
                log.warning("%s: skipped utterance %s: %s", stage, utterance, reason)
        return "audio" in batch

    def loss_ok(self, loss: torch.Tensor | None, batch: Mapping[str, Any], step: int,
                error: Exception | None = None) -> bool:
        """True for a finite loss. Otherwise the batch is logged and counted (or the run stops)."""
        if error is None and loss is not None and bool(torch.isfinite(loss.detach()).all()):
            self._epoch_trained += 1
            return True
        what = f"loss inputs are not finite ({error})" if error is not None else f"loss is {float(loss)}"
        message = f"step {step}: {what}; batch of {_ids(batch)}"
        if not self.skip_nan_grad:
            raise TrainingAborted(f"{message} (trainer.skip_nan_grad=false stops at the first)")
        self._count_skip(message)
        return False

    def _count_skip(self, message: str) -> None:
        self.skipped_batches += 1
        log.warning("%s: update skipped (%d skipped batch(es))", message, self.skipped_batches)
        if 0 <= self.max_skipped_batches < self.skipped_batches:
            raise TrainingAborted(f"{message}; {self.skipped_batches} batches skipped, more than "
                                  f"trainer.max_skipped_batches={self.max_skipped_batches}")

    # -- Lightning hooks
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if self._drop_next_step:
            self._drop_next_step = False
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
            return
        if not self.skip_nan_grad:
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads or math.isfinite(float(torch.stack([g.detach().float().abs().sum() for g in grads]).sum())):
            return
        # No gradient: torch's optimizers leave such parameters (and their moments) untouched.
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
        self._epoch_trained -= 1
        self._count_skip(f"step {trainer.global_step}: gradients are not finite")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_trained = self._epoch_bad = 0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._epoch_bad or self.skipped_batches:
            log.warning("epoch %d: %d utterance(s) with bad audio skipped (%d distinct in the run), %d batch(es) "
                        "with a non-finite loss or gradients skipped in the run", trainer.current_epoch,
                        self._epoch_bad, len(self.bad_utterances), self.skipped_batches)
        if self._epoch_bad and self._epoch_trained <= 0:
            raise TrainingAborted(f"epoch {trainer.current_epoch}: no batch could be trained on; "
                                  f"{self._epoch_bad} utterance(s) skipped for bad audio, e.g. "
                                  + "; ".join(f"{u}: {r}" for u, r in list(self.bad_utterances.items())[:3]))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.bad_utterances or self.skipped_batches:
            names = ", ".join(list(self.bad_utterances)[:10])
            more = f" and {len(self.bad_utterances) - 10} more" if len(self.bad_utterances) > 10 else ""
            log.warning("training skipped %d utterance(s) with bad audio%s and %d batch(es) with a non-finite "
                        "loss or gradients", len(self.bad_utterances), f" ({names}{more})" if names else "",
                        self.skipped_batches)

    def state_dict(self) -> dict[str, Any]:
        return {"bad_utterances": dict(self.bad_utterances), "skipped_batches": self.skipped_batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.bad_utterances = dict(state_dict.get("bad_utterances", {}))
        self.skipped_batches = int(state_dict.get("skipped_batches", 0))
