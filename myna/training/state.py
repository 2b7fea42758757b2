"""Random streams that a resumed run draws exactly as the uninterrupted run did.

What a training step draws (dropout, SpecAugment's masks, the featurizer's dither, anything using
Python's ``random`` or numpy's global generator) comes from the process-global streams. Instead
of saving and restoring their states around Lightning's own consumption (sanity checks, loader
start-up, validation), :class:`StepSeeds` reseeds Python, numpy and torch (CPU and every CUDA
device) before each training batch from ``(seed, rank, global step, batch within the step)``.
The streams of a step are therefore a function of the step alone: after ``kill -9`` and a resume
from the checkpoint of step N, step N+1 draws what it drew in the uninterrupted run.

The other random choices are functions of their seeds and the epoch, with the position in the
epoch saved by the loader (:mod:`myna.data.resumable`): the batch samplers' permutations and
semi-sorting noise, the bucket chooser, tar shard and buffer shuffles. The model, optimizer,
scheduler and loop counters are Lightning's checkpoint.

>>> trainer = L.Trainer(callbacks=[StepSeeds(cfg.seed), ...])
"""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch

__all__ = ["StepSeeds", "step_seed"]


def step_seed(seed: int, rank: int, step: int, micro: int) -> int:
    """A 32-bit seed for ``(seed, rank, step, micro)``, well mixed (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, rank, step, micro]).generate_state(1)[0])


class StepSeeds(L.Callback):
    """Reseeds the global random streams before each training batch (see the module docstring).

    Args:
        seed: the run's seed (``cfg.seed``).
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = int(seed)
        self._step = -1
        self._micro = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        step = trainer.global_step
        # Batches accumulated into one step (or skipped ones) get their own streams; a resume starts
        # at a step boundary, where the count is 0 in both runs.
        self._micro = self._micro + 1 if step == self._step else 0
        self._step = step
        value = step_seed(self.seed, trainer.global_rank, step, self._micro)
        random.seed(value)
        np.random.seed(value)
        torch.manual_seed(value)  # also seeds every CUDA device
