"""Loaders that own their data position, so that an interrupted run resumes to the same batches.

Every training loader of myna (plain and semi-sorted manifests, static buckets, tar shards,
Lhotse) is a :class:`ResumableLoader`: an iterable of batch dicts whose ``state_dict()`` is its
position (the epoch and what of it was served) and whose ``load_state_dict()`` makes the next
iteration continue from there. Lightning stores the state of a train loader that has both methods
in every checkpoint and hands it back on resume (:mod:`myna.training.loader_position` keeps it
exact under Lightning's read-ahead).

Resuming never replays or skips a batch: the order of an epoch is a function of the seeds and the
epoch, and the position says where in that order training stood. How the served batches are
passed over depends on the loader: a batch sampler drops index lists (no audio is read), a
streaming loader re-reads its stream without decoding audio (each worker passes over the batches
it had served; see :class:`WorkerStream`).

>>> loader = build_loader(cfg.model.train_ds, tokenizer, train=True, seed=1, name="train_ds")
>>> batches = iter(loader); next(batches); next(batches)
>>> state = loader.state_dict()          # {"epoch": 0, "batches": 2, ...}
>>> fresh = build_loader(cfg.model.train_ds, tokenizer, train=True, seed=1, name="train_ds")
>>> fresh.load_state_dict(state)         # next(iter(fresh)) is the third batch of epoch 0
"""

from __future__ import annotations

import logging
from collections import deque
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Sequence

from torch.utils.data import DataLoader, IterableDataset, Sampler, get_worker_info

__all__ = ["ResumableLoader", "ResumableDataLoader", "ReplayLoader", "WorkerStream", "stream_worker_pass"]

logger = logging.getLogger("myna.data")

Position = dict[str, Any]


class ResumableLoader:
    """Base of myna's loaders: epochs of batches, and a position that can be saved and restored.

    The position is a small dict: ``epoch``, ``batches`` (served in that epoch) and whatever a
    subclass needs to continue (a bucket index, a tar pass, per-worker counts). Each ``iter()``
    plays the next epoch (or, after :meth:`load_state_dict`, the rest of the restored one).

    Subclasses implement :meth:`_iterate`, yielding ``(batch, position after it)``; a batch of
    None is counted but not served (every utterance of it failed to load).

    Consumption: by default a batch counts as served when it is handed out. A consumer that
    reads ahead (Lightning fetches one batch early when a loader has no length) calls
    :meth:`batch_consumed` as each batch enters training; from then on the state counts only
    those batches.
    """

    def __init__(self) -> None:
        self.epoch = 0
        self._resume: Position | None = None
        self._pending: deque[Position] = deque()
        self._acking = False
        self._committed: Position = {"epoch": 0, **self._start_position(0)}

    # -- subclass interface
    def _start_position(self, epoch: int) -> Position:
        """The position at the start of ``epoch`` (without ``epoch``)."""
        return {"batches": 0}

    def _iterate(self, epoch: int, start: Position) -> Iterator[tuple[Any, Position]]:
        raise NotImplementedError

    # -- iteration
    def set_epoch(self, epoch: int) -> None:
        """Play ``epoch`` next. A different epoch than a restored position's drops that position
        (the restored epoch is over), as Lhotse's samplers do."""
        if self._resume is not None and self._resume["epoch"] != epoch:
            self._resume = None
        self.epoch = epoch

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        start = self._resume if self._resume is not None else {"epoch": epoch, **self._start_position(epoch)}
        self._resume = None
        self.epoch = epoch + 1
        self._pending.clear()
        self._committed = dict(start)
        start = {k: v for k, v in start.items() if k != "epoch"}
        for batch, position in self._iterate(epoch, start):
            position = {"epoch": epoch, **position}
            if batch is None or (isinstance(batch, dict) and not batch):
                if not self._acking:
                    self._committed = position
                continue
            self._pending.append(position)
            if not self._acking:
                self._committed = position
            yield batch

    def batch_consumed(self) -> None:
        """Mark the oldest batch handed out and not yet marked as taken into training."""
        self._acking = True
        if self._pending:
            self._committed = self._pending.popleft()

    def end_epoch(self) -> None:
        """The consumer ends the epoch here (e.g. at ``limit_train_batches``): the position becomes
        the start of the next epoch, which the next ``iter()`` plays."""
        epoch = int(self._committed["epoch"]) + 1
        self._pending.clear()
        self._resume = None
        self.epoch = epoch
        self._committed = {"epoch": epoch, **self._start_position(epoch)}

    # -- state
    def state_dict(self) -> Position:
        """The position after the last batch served (or marked consumed)."""
        return dict(self._committed)

    def load_state_dict(self, state: Position) -> None:
        """Continue from ``state`` (a :meth:`state_dict`) on the next ``iter()``."""
        state = dict(state)
        if "batches_served" in state:  # written by myna's earlier ResumableDataLoader
            state["batches"] = state.pop("batches_served")
        if "epoch" not in state or "batches" not in state:
            raise ValueError(f"not a loader position: {state!r}")
        self._check_state(state)
        length = self._length()
        if length is not None and int(state["batches"]) >= length:  # the epoch was complete
            state = {"epoch": int(state["epoch"]) + 1, **self._start_position(int(state["epoch"]) + 1)}
        self.epoch = int(state["epoch"])
        self._resume = state
        self._committed = dict(state)

    def _check_state(self, state: Position) -> None:
        """Raise ValueError when ``state`` cannot continue on this loader."""

    def _length(self) -> int | None:
        try:
            return len(self)  # type: ignore[arg-type]
        except TypeError:
            return None


class ResumableDataLoader(ResumableLoader):
    """A map-style dataset batched by a batch sampler with ``batches(epoch)`` (e.g.
    :class:`myna.data.sampling.DistributedBatchSampler`), read by a torch DataLoader.

    The sampler's order of epoch e is planned in the main process and handed to the DataLoader
    from the first batch not yet served, so resuming reads no audio it does not need.

    Args:
        dataset: map-style dataset of items.
        batch_sampler: has ``batches(epoch) -> list[list[int]]`` and ``__len__``.
        collate_fn: items -> batch.
        num_workers: DataLoader processes (kept alive across epochs).
        pin_memory: pin batches for host-to-GPU copies.
    """

    def __init__(self, dataset: Any, batch_sampler: Any, collate_fn: Callable | None = None,
                 num_workers: int = 0, pin_memory: bool = False):
        self.dataset = dataset
        self.batch_sampler = batch_sampler
        self._plan = _PlannedBatches()
        self._loader = DataLoader(dataset, batch_sampler=self._plan, collate_fn=collate_fn, num_workers=num_workers,
                                  pin_memory=pin_memory, persistent_workers=num_workers > 0)
        super().__init__()

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def _iterate(self, epoch: int, start: Position) -> Iterator[tuple[Any, Position]]:
        served = int(start["batches"])
        self._plan.batches = self.batch_sampler.batches(epoch)[served:]
        for batch in self._loader:
            served += 1
            yield batch, {"batches": served}


class _PlannedBatches(Sampler):
    """The batch sampler a DataLoader iterates: whatever plan was set before ``iter()``."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class ReplayLoader(ResumableLoader):
    """Any re-iterable of batches, resumed by iterating it again and passing over the batches
    already served: exact when the iterable repeats its order (a list, a seeded loader).

    Args:
        iterable: the batches; ``len()`` is used when it has one.
    """

    def __init__(self, iterable: Iterable):
        self.iterable = iterable
        super().__init__()

    def __len__(self) -> int:
        return len(self.iterable)  # type: ignore[arg-type]

    def _iterate(self, epoch: int, start: Position) -> Iterator[tuple[Any, Position]]:
        skip = int(start["batches"])
        for served, batch in enumerate(self.iterable, start=1):
            if served > skip:
                yield batch, {"batches": served}


# ----------------------------------------------------------------------------- streams


class WorkerStream(IterableDataset):
    """A stream of batches split over DataLoader workers, resumable per worker.

    Subclasses implement :meth:`worker_batches`: the batches of one (logical) worker, formed
    before any audio is decoded, so that passing over ``skip`` of them costs no decoding and
    gives the same later batches. A DataLoader serves its workers' batches round-robin (skipping
    a worker that has run dry); to continue that order after a restart, the physical worker 0
    plays the logical worker whose turn was next (``rotation``), and each logical worker passes
    over the batches it had served (``skips``).

    Yields:
        ``(logical worker, batch)``; batch None when every utterance of it failed to load.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rotation = 0
        self.skips: Sequence[int] = ()

    def worker_batches(self, worker: int, num_workers: int, skip: int) -> Iterator[Any]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        worker, num_workers = logical_worker(self.rotation)
        skip = self.skips[worker] if worker < len(self.skips) else 0
        for batch in self.worker_batches(worker, num_workers, skip):
            yield worker, batch


def logical_worker(rotation: int) -> tuple[int, int]:
    """(logical id, number of workers) of the DataLoader worker this runs in ((0, 1) outside one)."""
    info = get_worker_info()
    if info is None:
        return 0, 1
    return (info.id + rotation) % info.num_workers, info.num_workers


def stream_worker_pass(stream: WorkerStream, start: Position, num_workers: int, pin_memory: bool = False,
                       worker_init_fn: Callable[[int], None] | None = None) -> Iterator[tuple[Any, Position]]:
    """Play one pass of ``stream`` through a DataLoader from ``start`` and track the position.

    Args:
        stream: the worker stream (its ``rotation`` and ``skips`` are set here).
        start: ``worker_batches`` (served per logical worker) and ``next_worker`` (whose turn
            is next); empty at the start of a pass.
        num_workers: DataLoader processes (0: the stream runs here, as one logical worker).
        pin_memory: pin batches.
        worker_init_fn: called with the *logical* worker id in each worker.

    Yields:
        ``(batch, {"worker_batches": [...], "next_worker": w})`` after each batch.
    """
    workers = max(1, num_workers)
    counts = [int(c) for c in start.get("worker_batches") or [0] * workers]
    if len(counts) != workers:
        raise ValueError(f"the saved position counts batches of {len(counts)} loader workers; "
                         f"this loader has {workers} (set num_workers={len(counts) if len(counts) > 1 else 0} "
                         f"to resume, or start a new epoch)")
    rotation = int(start.get("next_worker", 0)) % workers
    stream.rotation, stream.skips = rotation, list(counts)
    init = partial(_logical_init, rotation=rotation, num_workers=workers, init=worker_init_fn) \
        if worker_init_fn is not None and num_workers > 0 else None
    loader = DataLoader(stream, batch_size=None, num_workers=num_workers, collate_fn=_as_is, pin_memory=pin_memory,
                        worker_init_fn=init, persistent_workers=False)
    for worker, batch in loader:
        worker = int(worker)
        counts[worker] += 1
        yield batch, {"worker_batches": list(counts), "next_worker": (worker + 1) % workers}


def _logical_init(worker_id: int, rotation: int, num_workers: int, init: Callable[[int], None]) -> None:
    init((worker_id + rotation) % num_workers)


def _as_is(item: Any) -> Any:
    return item
