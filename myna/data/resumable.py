"""A DataLoader that resumes mid-epoch: the batches already trained on are skipped, not replayed.

Lightning stores ``state_dict()`` of a stateful train loader in each checkpoint and calls
``load_state_dict()`` on resume. The state is the epoch and the number of batches handed out in
it; on resume the batch sampler skips that many batches of the same (seeded) epoch order, so
a run interrupted and resumed sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from typing import Any, Iterator

from torch.utils.data import DataLoader

__all__ = ["ResumableDataLoader"]


class ResumableDataLoader(DataLoader):
    """DataLoader over a batch sampler with ``epoch``, ``set_epoch`` and ``batches()`` (e.g.
    :class:`myna.data.sampling.DistributedBatchSampler`), with ``state_dict``/``load_state_dict``.

    Counting happens here, where batches are handed to the training loop, not in the sampler,
    which worker prefetching runs ahead of.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sampler = self.batch_sampler
        for attr in ("epoch", "set_epoch", "batches"):
            if not hasattr(sampler, attr):
                raise TypeError(f"ResumableDataLoader needs a batch sampler with {attr!r}, got {type(sampler).__name__}")
        self._epoch = sampler.epoch
        self._served = 0
        self._skip = 0

    def __iter__(self) -> Iterator:
        sampler = self.batch_sampler
        self._epoch = sampler.epoch
        skip, self._skip = self._skip, 0
        sampler.skip_batches = skip
        self._served = skip
        try:
            for batch in super().__iter__():
                self._served += 1
                yield batch
        finally:
            sampler.skip_batches = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self._epoch), "batches_served": int(self._served)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.set_epoch(int(state["epoch"]))
        self._epoch = int(state["epoch"])
        self._skip = int(state["batches_served"])
