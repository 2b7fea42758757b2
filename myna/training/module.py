"""Lightning wrapper around a myna model: losses, greedy-WER validation, optimizer and schedule."""

from __future__ import annotations

import logging
from typing import Any, Mapping

import lightning as L
import torch

from myna.metrics import error_rates
from myna.training.guards import TrainingGuard
from myna.training.schedules import build_scheduler

__all__ = ["ASRTask", "build_optimizer", "optimizer_and_schedule"]

log = logging.getLogger("myna.train")

OPTIMIZERS = ("adamw", "adam", "sgd", "adamw8bit")


def build_optimizer(params, optim: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Optimizer from ``model.optim`` (name, lr, betas, eps, weight_decay, momentum)."""
    name = str(optim.get("name", "adamw")).lower()
    lr = float(optim["lr"])
    weight_decay = float(optim.get("weight_decay") or 0.0)
    betas = tuple(optim.get("betas") or (0.9, 0.999))
    eps = float(optim.get("eps") or 1e-8)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(optim.get("momentum") or 0.0),
                               weight_decay=weight_decay)
    if name == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ValueError("model.optim.name=adamw8bit needs bitsandbytes: pip install bitsandbytes") from None
        return bnb.optim.AdamW8bit(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    raise ValueError(f"model.optim.name={name!r} is not supported; choose one of {OPTIMIZERS}")


class ASRTask(L.LightningModule):
    """Trains a Transducer (or hybrid) model; validates with batched greedy WER.

    Logged: ``train_loss`` (and loss parts) every step, ``lr``, ``val_loss`` and ``val_wer`` at
    each validation.
    """

    def __init__(self, model: torch.nn.Module, optim: Mapping[str, Any], max_steps: int | None,
                 compute_eval_loss: bool = True):
        super().__init__()
        self.model = model
        self.optim_cfg = dict(optim)
        self.max_steps = max_steps
        self.compute_eval_loss = compute_eval_loss
        self._val_refs: list[str] = []
        self._val_hyps: list[str] = []
        self._val_losses: list[float] = []
        self._val_row_losses: list[tuple[str, float]] = []  # (utterance id, loss) on several ranks
        self._val_ids: list[str | None] = []
        self.examples_seen = {"real": 0, "synthetic": 0}
        # Bad audio and non-finite batches are skipped and counted; run.py registers its guard as a
        # callback too (per-epoch reports, gradient checks, counts kept in checkpoints).
        self.guard = TrainingGuard()

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        out = self.guard.forward(self, batch)
        if self._world_size() > 1 and self._any_rank_skips(out is None):
            # One rank skipping backward alone would leave the others waiting in the gradient
            # all-reduce: every rank runs the backward of a zero loss instead, and the guard drops
            # the (zero) gradients before the optimizer step, so no rank updates on this batch.
            self.guard.drop_next_step(f"step {self.global_step}: a batch was skipped on another rank"
                                      if out is not None else None)
            return sum((p * 0).sum() for p in self.parameters() if p.requires_grad)
        if out is None:  # no update for this batch: Lightning skips backward and step
            return None
        batch_size = batch["audio"].shape[0]
        for key, value in out.items():
            if key.endswith("loss"):
                # the mean over ranks: the loss of the global batch (equal per-rank batches)
                self.log(f"train_{key}" if key != "loss" else "train_loss", value.detach(), prog_bar=key == "loss",
                         batch_size=batch_size, sync_dist=self._world_size() > 1)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=batch_size)
        if "synthetic" in batch:
            self._count_examples(batch["synthetic"], batch_size)
        return out["loss"]

    def _any_rank_skips(self, skip_here: bool) -> bool:
        """True on every rank when any rank skips this batch (one all-reduce of a flag)."""
        flag = torch.tensor([1.0 if skip_here else 0.0], device=self.device)
        return float(self.trainer.strategy.reduce(flag, reduce_op="sum")) > 0

    def _count_examples(self, synthetic: torch.Tensor, batch_size: int) -> None:
        """Log the real and the synthesised (TTS) examples of a mixed batch apart, summed over ranks;
        this rank's running totals are kept in checkpoints and logged at each epoch's end."""
        n_synthetic = int(synthetic.sum())
        self.examples_seen["real"] += batch_size - n_synthetic
        self.examples_seen["synthetic"] += n_synthetic
        for kind, n in (("real", batch_size - n_synthetic), ("synthetic", n_synthetic)):
            self.log(f"train_{kind}_examples", float(n), reduce_fx="sum", sync_dist=True, batch_size=batch_size)

    def on_train_epoch_end(self) -> None:
        if self.examples_seen["synthetic"]:
            log.info("rank %d has trained on %d real and %d synthetic examples", self.global_rank,
                     self.examples_seen["real"], self.examples_seen["synthetic"])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["examples_seen"] = dict(self.examples_seen)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.examples_seen.update(checkpoint.get("examples_seen", {}))

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        if not self.guard.admit(batch, stage="validation"):
            return
        model = self.model
        features, lengths = model.featurize(batch["audio"], batch["audio_lengths"])
        encoded, encoded_lengths = model.encoder(features, lengths)
        tokens, token_lengths = batch["tokens"], batch["token_lengths"]
        ids = batch.get("ids") or [None] * encoded.shape[0]
        if self.compute_eval_loss:
            if self._world_size() > 1 and None not in ids:
                # Ranks pad their shares with repeats of utterances (equal batch counts): one loss per
                # utterance, so that each counts once in val_loss, as in the WER.
                for b, utt in enumerate(ids):
                    t, u = int(encoded_lengths[b]), int(token_lengths[b])
                    row = model.eval_loss(encoded[b:b + 1, :t], encoded_lengths[b:b + 1], tokens[b:b + 1, :u],
                                          token_lengths[b:b + 1])
                    self._val_row_losses.append((utt, float(row)))
            else:
                self._val_losses.append(float(model.eval_loss(encoded, encoded_lengths, tokens, token_lengths)))
        hyps = model.decode(encoded, encoded_lengths)
        for b, hyp in enumerate(hyps):
            self._val_refs.append(model.tokenizer.decode(tokens[b, : int(token_lengths[b])].tolist()))
            self._val_hyps.append(hyp.text or "")
            self._val_ids.append(ids[b])

    def on_validation_epoch_end(self) -> None:
        refs, hyps = self._val_refs, self._val_hyps
        if self._world_size() > 1:
            refs, hyps = _gather_transcripts(self._val_ids, refs, hyps)
        self._val_ids = []
        if not refs:
            self._val_losses, self._val_row_losses = [], []
            return
        rates = error_rates(refs, hyps)
        self.log("val_wer", rates.wer, prog_bar=True)
        self.log("val_cer", rates.cer)
        if self._val_row_losses:  # several ranks: every rank's utterance losses, each utterance once
            once = dict(row for rank_rows in _all_ranks(self._val_row_losses) for row in rank_rows)
            self.log("val_loss", sum(once.values()) / len(once))
        elif self._val_losses:
            self.log("val_loss", sum(self._val_losses) / len(self._val_losses),
                     sync_dist=self._world_size() > 1)
        self._val_refs, self._val_hyps, self._val_losses, self._val_row_losses = [], [], [], []

    def configure_optimizers(self):
        return optimizer_and_schedule(self.model, self.optim_cfg, self.max_steps or self._planned_steps())

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Lightning's clipping, except under FSDP, where the norm is FSDP's over every shard
        (Lightning's FSDP precision plugin does not clip by norm)."""
        wrapped = getattr(self._trainer.strategy, "model", None) if self._trainer is not None else None
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm") and \
                type(wrapped).__name__ == "FullyShardedDataParallel":
            wrapped.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def _world_size(self) -> int:
        """Processes of the run (1 when no trainer is attached, as in direct calls)."""
        return self._trainer.world_size if self._trainer is not None else 1

    def _planned_steps(self) -> int:
        """Optimizer steps of the whole run from the trainer (epochs x this rank's batches)."""
        steps = self.trainer.estimated_stepping_batches
        if steps == float("inf"):
            raise ValueError("model.train_ds gives an endless (Lhotse) loader: set trainer.max_steps "
                             "(and trainer.limit_train_batches for the epoch length)")
        return int(steps)


def _gather_transcripts(ids: list, refs: list[str], hyps: list[str]) -> tuple[list[str], list[str]]:
    """Every rank's validation transcripts, each utterance once (ranks pad their shares with a few
    repeats to equal batch counts; the repeats carry the same id)."""
    seen, out_refs, out_hyps = set(), [], []
    for utt, ref, hyp in (row for rank_rows in _all_ranks(list(zip(ids, refs, hyps))) for row in rank_rows):
        if utt is not None and utt in seen:
            continue
        seen.add(utt)
        out_refs.append(ref)
        out_hyps.append(hyp)
    return out_refs, out_hyps


def _all_ranks(mine: list) -> list[list]:
    """Every rank's list of rows (picklable), in rank order (a collective: every rank calls it)."""
    import torch.distributed as dist

    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    return everyone


def optimizer_and_schedule(model: torch.nn.Module, optim: Mapping[str, Any], max_steps: int):
    """Lightning's ``configure_optimizers`` answer: the optimizer over the trainable parameters
    and its per-step schedule (``optim.sched``), or the optimizer alone without one."""
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], optim)
    scheduler = build_scheduler(optimizer, optim.get("sched"), max_steps)
    if scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
