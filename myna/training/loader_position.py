"""Keeps the saved position of the train loader exact under Lightning.

Lightning stores ``state_dict()`` of a train loader that has ``state_dict`` / ``load_state_dict``
(every :class:`myna.data.resumable.ResumableLoader`) in each checkpoint and restores it before
iterating again. Two things would make that position wrong, and this callback corrects both:

- Lightning fetches one batch ahead when the loader has no length (Lhotse loaders), so a loader
  that counts what it handed out would count one batch too many: the callback marks each batch
  as it enters training (:meth:`~myna.data.resumable.ResumableLoader.batch_consumed`).
- Lightning may end an epoch before the loader does (``limit_train_batches``, endless Lhotse
  loaders): at the last batch of Lightning's epoch the callback moves the position to the start
  of the next epoch (:meth:`~myna.data.resumable.ResumableLoader.end_epoch`), before the
  checkpoint of that step is written.

>>> trainer = L.Trainer(callbacks=[LoaderPosition(), ModelCheckpoint(...)], use_distributed_sampler=False)
"""

from __future__ import annotations

from typing import Any

import lightning as L

from myna.data.resumable import ResumableLoader

__all__ = ["LoaderPosition"]


class LoaderPosition(L.Callback):
    """Marks each training batch as consumed and each Lightning epoch end on the train loader."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        loader = _train_loader(trainer)
        if loader is not None:
            loader.batch_consumed()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loader = _train_loader(trainer)
        if loader is not None and batch_idx + 1 >= trainer.num_training_batches:
            loader.end_epoch()


def _train_loader(trainer: L.Trainer) -> ResumableLoader | None:
    loader = trainer.train_dataloader
    return loader if isinstance(loader, ResumableLoader) else None
