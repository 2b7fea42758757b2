"""Ctrl-C (SIGINT) and SIGTERM during training: finish the step, write ``last.ckpt``, stop.

(The same callback also writes ``last.ckpt`` at the final step of a run that ends normally.)

The first signal sets a flag; at the end of the training step in progress the callback writes the
checkpoint that ``resume_if_exists`` reads and raises :class:`TrainingInterrupted` out of
``trainer.fit`` (Lightning runs its teardown on the way), so the same command resumes
from that step. A second signal stops at once, as Ctrl-C normally does. The handlers are installed
when training starts (after Lightning's own SIGTERM handler, which they replace while training) and
the previous ones are back when it ends.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import lightning as L

__all__ = ["CheckpointOnInterrupt", "TrainingInterrupted"]

log = logging.getLogger("myna.train")


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a checkpoint."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path):
        super().__init__(f"{signal_name}: stopped at step {step}; checkpoint {checkpoint} (run the same command "
                         "to continue from it)")
        self.step = step
        self.checkpoint = checkpoint


class CheckpointOnInterrupt(L.Callback):
    """Writes ``checkpoint`` at the end of the step during which SIGINT or SIGTERM arrived."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, checkpoint: str | Path):
        self.checkpoint = Path(checkpoint)
        self.received: str | None = None
        self.stopped_at: int | None = None
        self._final_saved: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt  # second signal: stop now
        self.received = signal.Signals(signum).name
        log.warning("%s received: writing a checkpoint after this step, then stopping (again to stop at once)",
                    self.received)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals to the caller
            self._previous.clear()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.received is None and self.stopped_at is None and 0 < trainer.max_steps <= trainer.global_step:
            # The final step's checkpoint is written here, where the loops' state is that of a step
            # just done: written at train end instead (after Lightning closed the epoch), a run that
            # ended on an epoch's last batch would resume one batch into the wrong epoch.
            trainer.save_checkpoint(self.checkpoint)
            self._final_saved = trainer.global_step
        if self.received is None or self.stopped_at is not None:
            return
        trainer.save_checkpoint(self.checkpoint)
        self.stopped_at = trainer.global_step
        log.warning("checkpoint written at step %d: %s", trainer.global_step, self.checkpoint)
        # Raised rather than trainer.should_stop, which would first run a whole validation pass.
        raise TrainingInterrupted(self.received, self.stopped_at, self.checkpoint)

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()
        if self.stopped_at is None and trainer.global_step > 0 and self._final_saved != trainer.global_step:
            # The final step is checkpointed too (whatever checkpoint_every_n_steps is), so a rerun
            # sees a completed run instead of retraining the steps after the last periodic checkpoint.
            trainer.save_checkpoint(self.checkpoint)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()
