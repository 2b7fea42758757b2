"""The train and validation loaders of ``myna train``, built per rank once the processes exist.

Lightning starts the other processes of a multi-process run inside ``trainer.fit`` (its own
launcher) or they are started beside this one (``torchrun``, SLURM). Either way a loader built
before ``fit`` would not know its rank. :class:`ASRDataModule` builds them in ``setup``, which
Lightning calls in every process after the process group exists, from the trainer's
``global_rank`` and ``world_size`` (NeMo's ``defer_setup``). Each rank then reads its own share
of every sampler path (:func:`myna.data.factory.build_loader`), with the same number of steps.

Batch sizes in ``model.train_ds`` (``batch_size``, ``batch_duration``) are per rank; the global
batch of one optimizer step is that times the world size times ``accumulate_grad_batches``, and
is logged once at setup.

>>> data = ASRDataModule(cfg.model.train_ds, cfg.model.validation_ds, tokenizer, seed=cfg.seed)
>>> trainer.fit(task, datamodule=data)
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import lightning as L

from myna.data.factory import build_loader
from myna.data.spec import DatasetSpec
from myna.training.distributed import describe_layout

__all__ = ["ASRDataModule", "has_data", "global_batch_summary"]

log = logging.getLogger("myna.train")


def has_data(section: Any, name: str) -> bool:
    """Whether a dataset section names any data (checked without reading it)."""
    return section is not None and DatasetSpec.from_section(section, name).has_source


def global_batch_summary(section: Any, world_size: int, accumulate: int, name: str = "train_ds") -> str:
    """``model.<name>``'s batch per rank and per optimizer step, in words."""
    spec = DatasetSpec.from_section(section, name)
    factor = world_size * accumulate
    parts = []
    if spec.use_lhotse and spec.batch_duration is not None:
        parts.append(f"batch_duration {spec.batch_duration:g} s per rank = {spec.batch_duration * factor:g} s "
                     f"of audio per optimizer step")
    if spec.batch_size is not None and not (spec.use_lhotse and spec.batch_duration is not None):
        parts.append(f"batch_size {spec.batch_size} per rank = {spec.batch_size * factor} utterances per "
                     f"optimizer step")
    elif spec.batch_size is not None:
        parts.append(f"at most {spec.batch_size} utterances per rank")
    return f"model.{name}: {'; '.join(parts)} ({world_size} ranks x accumulate_grad_batches {accumulate})"


class ASRDataModule(L.LightningDataModule):
    """Train / validation loaders of one rank, built in :meth:`setup`.

    Args:
        train_ds: the ``model.train_ds`` section (NeMo keys).
        validation_ds: the ``model.validation_ds`` section, or None.
        tokenizer: text -> token ids.
        seed: the run's seed (every rank the same; the samplers split by rank themselves).
        build: the loader factory (``build_loader``'s signature); swapped in tests.
    """

    def __init__(self, train_ds: Any, validation_ds: Any, tokenizer: Any, seed: int,
                 build: Callable[..., Any] = build_loader):
        super().__init__()
        self.train_ds = train_ds
        self.validation_ds = validation_ds
        self.tokenizer = tokenizer
        self.seed = seed
        self.build = build
        self.train_loader: Any = None
        self.val_loader: Any = None
        self.rank, self.world_size = 0, 1

    def setup(self, stage: str) -> None:
        trainer = self.trainer
        self.rank, self.world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if self.train_loader is not None:  # built already (fit after validate, or a second setup)
            return
        if trainer is not None and self.world_size > 1:
            log.info("%s", describe_layout(trainer))
        self.train_loader = self.build(self.train_ds, self.tokenizer, train=True, seed=self.seed, name="train_ds",
                                       world_size=self.world_size, rank=self.rank)
        if self.train_loader is None:
            raise ValueError("model.train_ds.manifest_filepath is required to train")
        if self.validation_ds is not None:
            self.val_loader = self.build(self.validation_ds, self.tokenizer, train=False, seed=self.seed,
                                         name="validation_ds", world_size=self.world_size, rank=self.rank)
        if self.rank == 0:
            accumulate = trainer.accumulate_grad_batches if trainer is not None else 1
            log.info("%s", global_batch_summary(self.train_ds, self.world_size, accumulate))

    def train_dataloader(self) -> Any:
        return self.train_loader

    def val_dataloader(self) -> Any:
        return self.val_loader if self.val_loader is not None else []
