"""Batching with little padding: semi-sorted batches, static duration buckets, equal DDP counts.

- :class:`DistributedBatchSampler` (and its NeMo-named special case :class:`SemiSortBatchSampler`):
  batches of indices for one rank; random, or semi-sorted (durations plus uniform noise, sorted,
  cut into batches, batch order shuffled). Every rank gets the same number of batches.
- Static bucketing (NeMo's ``manifest_filepath: [[b1.json], [b2.json], ...]``): one batch source
  per duration bucket, each with its own batch size (:func:`bucketing_batch_sizes`), buckets
  upsampled by ``bucketing_weights``, played one after another in the order of
  ``bucketing_strategy`` (:func:`bucket_order`) by :class:`BucketChainLoader`.
- :class:`FixedLengthLoader`: serves exactly N batches per epoch from a streaming loader (tar
  shards), so DDP ranks never disagree on the number of steps (which would hang a collective).

Both loaders are resumable (:class:`myna.data.resumable.ResumableLoader`): their ``state_dict()`` is their
position inside the epoch, and a restored loader continues with the next batch.

>>> sampler = SemiSortBatchSampler(durations, batch_size=32, randomization_factor=0.1, seed=1)
>>> loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_audio_text)
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from myna.data.resumable import Position, ReplayLoader, ResumableLoader
from myna.data.spec import BUCKETING_STRATEGIES

__all__ = [
    "DistributedBatchSampler",
    "SemiSortBatchSampler",
    "BucketChainLoader",
    "FixedLengthLoader",
    "bucketing_batch_sizes",
    "bucket_order",
    "BUCKETING_STRATEGIES",
]

logger = logging.getLogger("myna.data")

class DistributedBatchSampler(Sampler[list[int]]):
    """One rank's batches of dataset indices, the same count on every rank.

    Random mode permutes the indices (seed + epoch). Semi-sorted mode (``randomization_factor``
    set; NeMo's SemiSortBatchSampler, Ge et al. 2021) sorts by ``duration + noise``, the noise
    uniform in ``[-d, d]`` with ``d = (max - min duration) * randomization_factor / 2``, so batches
    hold similar lengths yet differ every epoch. Batches are then padded with randomly chosen
    repeats to a multiple of ``world_size``, dealt out round-robin (rank r takes every
    ``world_size``-th index) and, with ``shuffle``, served in a random order.

    Args:
        durations: seconds per dataset index.
        batch_size: utterances per batch (per rank).
        world_size, rank: DDP layout.
        shuffle: reshuffle every epoch; False: dataset order (random mode) / sorted order.
        seed: same seed and epoch give the same batches on every run.
        drop_last: drop ``len % batch_size`` random utterances first so every batch is full.
        randomization_factor: None for random batches; a float >= 0 for semi-sorted ones
            (0: fully sorted, most padding saved, least randomness; NeMo's default 0.1; the
            paper's 0.2).
    """

    def __init__(self, durations: Sequence[float], batch_size: int, world_size: int = 1, rank: int = 0,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 randomization_factor: float | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        if randomization_factor is not None and randomization_factor < 0:
            raise ValueError(f"randomization_factor must be >= 0, got {randomization_factor}")
        self.durations = np.asarray(list(durations), dtype=np.float64)
        if len(self.durations) == 0:
            raise ValueError("no utterances to batch")
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.randomization_factor = randomization_factor
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.durations)
        if self.drop_last:
            n -= n % self.batch_size
        global_batches = math.ceil(n / self.batch_size)
        return math.ceil(global_batches / self.world_size)

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """The batches of ``epoch`` (default: the current one) for this rank, a function of the
        seed and the epoch alone (iterating them does not advance the epoch)."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.durations)
        if self.randomization_factor is not None:
            spread = float(self.durations.max() - self.durations.min())
            bound = spread * self.randomization_factor / 2
            noise = rng.uniform(-bound, bound, size=n) if self.shuffle and bound > 0 else np.zeros(n)
            order = np.argsort(self.durations + noise, kind="stable")
        elif self.shuffle:
            order = rng.permutation(n)
        else:
            order = np.arange(n)
        if self.drop_last and n % self.batch_size:
            drop = rng.choice(n, n % self.batch_size, replace=False)
            order = np.delete(order, drop)
        global_batches = math.ceil(len(order) / self.batch_size)
        pad = (-global_batches) % self.world_size
        if pad:  # repeat random utterances so every rank gets the same number of batches
            order = np.concatenate([order, order[rng.integers(0, len(order), pad * self.batch_size)]])
        mine = order[self.rank :: self.world_size]
        batches = [mine[i : i + self.batch_size].tolist() for i in range(0, len(mine), self.batch_size)]
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=torch.Generator().manual_seed(self.seed + epoch + 1))
            batches = [batches[i] for i in perm.tolist()]
        assert len(batches) == len(self), (len(batches), len(self))
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        self.epoch += 1
        return iter(batches)


class SemiSortBatchSampler(DistributedBatchSampler):
    """:class:`DistributedBatchSampler` in semi-sorted mode (NeMo's ``use_semi_sorted_batching``
    with ``randomization_factor``, default 0.1)."""

    def __init__(self, durations: Sequence[float], batch_size: int, world_size: int = 1, rank: int = 0,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 randomization_factor: float | None = 0.1):
        super().__init__(durations, batch_size, world_size, rank, shuffle, seed, drop_last,
                         0.1 if randomization_factor is None else randomization_factor)


def bucketing_batch_sizes(bucketing_batch_size: int | Sequence[int] | None, num_buckets: int,
                          batch_size: int, bucketing_weights: Sequence[int] | None = None) -> list[int]:
    """Batch size of each bucket (bucket 0: shortest utterances), NeMo's ``calc_bucketing_batch_sizes``.

    - None: every bucket uses ``batch_size`` (fixed);
    - an int b (adaptive, linear scaling): bucket i of N gets ``b * (N - i)``, so the longest
      bucket gets b and the shortest N * b (with ``batch_size`` 1, as NeMo requires);
    - a list: one size per bucket.

    ``bucketing_weights`` only repeats buckets; a repeated bucket keeps its size. Unlike NeMo,
    linear scaling counts distinct buckets (NeMo counts the repeats too).

    Returns:
        one size per distinct bucket.
    """
    if bucketing_weights is not None and len(bucketing_weights) != num_buckets:
        raise ValueError(f"bucketing_weights {list(bucketing_weights)} must have one weight per "
                         f"bucket ({num_buckets})")
    if bucketing_batch_size is None:
        return [batch_size] * num_buckets
    if batch_size != 1:
        raise ValueError(f"batch_size must be 1 when bucketing_batch_size is set (adaptive "
                         f"bucketing), got batch_size={batch_size}")
    if isinstance(bucketing_batch_size, bool):
        raise ValueError(f"bucketing_batch_size must be an int or a list, got {bucketing_batch_size!r}")
    if isinstance(bucketing_batch_size, int):
        sizes = [bucketing_batch_size * (num_buckets - i) for i in range(num_buckets)]
    elif isinstance(bucketing_batch_size, Sequence):
        sizes = [int(s) for s in bucketing_batch_size]
        if len(sizes) != num_buckets:
            raise ValueError(f"bucketing_batch_size {sizes} must have one size per bucket ({num_buckets})")
    else:
        raise ValueError(f"bucketing_batch_size must be an int or a list, got {bucketing_batch_size!r}")
    if any(s < 1 for s in sizes):
        raise ValueError(f"bucketing batch sizes must be >= 1, got {sizes}")
    return sizes


def bucket_order(num_buckets: int, strategy: str, epoch: int, seed: int = 0, rank: int = 0) -> list[int]:
    """Order in which buckets are played in one epoch (each bucket's batches all in a row).

    - ``fixed_order``: 0, 1, ..., N-1 (shortest first) every epoch, on every rank;
    - ``synced_randomized``: a random permutation per epoch, the same on every rank (from
      ``seed``), so all ranks train on the same bucket at the same step;
    - ``fully_randomized``: a permutation per epoch and rank (ranks differ; still reproducible
      from ``seed``; NeMo draws it from an unseeded RNG).
    """
    if strategy not in BUCKETING_STRATEGIES:
        raise ValueError(f"bucketing_strategy must be one of {BUCKETING_STRATEGIES}, got {strategy!r}")
    if strategy == "fixed_order":
        return list(range(num_buckets))
    key = [seed, epoch] if strategy == "synced_randomized" else [seed, epoch, rank + 1]
    return np.random.default_rng(key).permutation(num_buckets).tolist()


class BucketChainLoader(ResumableLoader):
    """Play per-bucket batch sources one after another: NeMo's static bucketing.

    A source listed several times (``bucketing_weights``) is played that many times per epoch,
    each time as the next epoch of its own order. The position is the place in this epoch's
    bucket order and the position inside the bucket being played.

    Args:
        sources: one batch source per *entry* (buckets already repeated by
            ``bucketing_weights``, the same object repeated); each has ``__len__`` equal on all
            ranks. Resumable loaders resume without replay; any other iterable is replayed.
        strategy: see :func:`bucket_order`.
        seed, rank: for the random strategies.
    """

    def __init__(self, sources: Sequence[Iterable], strategy: str = "synced_randomized",
                 seed: int = 0, rank: int = 0):
        if not sources:
            raise ValueError("no bucket to chain")
        bucket_order(len(sources), strategy, 0)  # validates the strategy
        wrapped: dict[int, ResumableLoader] = {}
        for source in sources:
            if id(source) not in wrapped:
                wrapped[id(source)] = source if isinstance(source, ResumableLoader) else ReplayLoader(source)
        self.sources = [wrapped[id(source)] for source in sources]
        self._repeats = Counter(id(source) for source in self.sources)
        self.strategy = strategy
        self.seed = seed
        self.rank = rank
        super().__init__()

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def order(self, epoch: int | None = None) -> list[int]:
        """The source order of ``epoch`` (default: the next one played)."""
        epoch = self.epoch if epoch is None else epoch
        return bucket_order(len(self.sources), self.strategy, epoch, self.seed, self.rank)

    def _iterate(self, epoch: int, start: Position) -> Iterator[tuple[Any, Position]]:
        served, first_slot, inner = int(start["batches"]), int(start.get("slot", 0)), start.get("inner")
        plays: Counter = Counter()
        for slot, index in enumerate(self.order(epoch)):
            source = self.sources[index]
            # the k-th play of a source in this epoch is epoch (epoch * repeats + k) of its own order
            source_epoch = epoch * self._repeats[id(source)] + plays[id(source)]
            plays[id(source)] += 1
            if slot < first_slot:
                continue
            begin = inner if slot == first_slot and inner is not None else source._start_position(source_epoch)
            for batch, position in source._iterate(source_epoch, begin):
                served += batch is not None
                yield batch, {"batches": served, "slot": slot, "inner": position}
        # (the next epoch starts at slot 0 of its own order)


class FixedLengthLoader(ResumableLoader):
    """Serve exactly ``num_batches`` batches per epoch from passes over a streaming source.

    A streaming source (tar shards, skipped members) cannot know its length exactly, and ranks
    would otherwise end an epoch at different steps and hang in the next collective. Each epoch
    starts a new pass over the source and stops after ``num_batches`` (the rest of the pass is not
    served); if the pass runs dry first, another pass fills up. The position is the epoch, the
    batches served, which pass is being played and the position inside it.

    Args:
        loader: a source of passes, with ``iter_pass(pass_id, start)`` yielding
            ``(batch, position)`` (:class:`myna.data.tarred.TarredPasses`), or any re-iterable of
            batches (each ``iter()`` a pass; resumed by replay).
        num_batches: batches per epoch, the same on every rank.
        name: label for log lines.
    """

    def __init__(self, loader: Any, num_batches: int, name: str = ""):
        if num_batches < 1:
            raise ValueError(f"{name}: num_batches must be >= 1, got {num_batches} "
                             f"(too little data for this batch size and number of ranks)")
        self.loader = loader
        self.num_batches = num_batches
        self.name = name
        self._passes = loader if hasattr(loader, "iter_pass") else _ReplayPasses(loader)
        super().__init__()

    @property
    def dataset(self) -> Any:
        return getattr(self.loader, "dataset", None)

    def __len__(self) -> int:
        return self.num_batches

    def _start_position(self, epoch: int) -> Position:
        return {"batches": 0, "refill": 0, "pass": {}}

    def _iterate(self, epoch: int, start: Position) -> Iterator[tuple[Any, Position]]:
        served, refill, inner = int(start["batches"]), int(start.get("refill", 0)), dict(start.get("pass") or {})
        resumed = bool(inner)
        while served < self.num_batches:
            got = 0
            for batch, position in self._passes.iter_pass((epoch, refill), inner):
                if batch is not None:
                    served += 1
                    got += 1
                yield batch, {"batches": served, "refill": refill, "pass": position}
                if served >= self.num_batches:
                    return
            if not got and not resumed:
                raise ValueError(f"{self.name}: a pass over the data yields no batch at all")
            logger.warning("%s: data ran out after %d of %d batches this epoch; continuing from a new pass",
                           self.name, served, self.num_batches)
            refill, inner, resumed = refill + 1, {}, False


class _ReplayPasses:
    """Passes of a plain re-iterable: each ``iter()`` is a pass, resumed by replaying it."""

    def __init__(self, iterable: Iterable):
        self.iterable = iterable

    def iter_pass(self, pass_id: tuple[int, int], start: Position) -> Iterator[tuple[Any, Position]]:
        skip = int(start.get("batches", 0))
        for served, batch in enumerate(self.iterable, start=1):
            if served > skip:
                yield batch, {"batches": served}


def min_padding_duration_bins(durations: Sequence[float], num_buckets: int, grid_points: int = 400) -> list[float]:
    """Bucket boundaries that minimise padding, for ``bucket_duration_bins``.

    Lhotse's estimate (equal total duration per bucket) leaves the sparse tails in wide buckets,
    where batches pad most. Here the boundaries are chosen by dynamic programming over
    ``grid_points`` duration quantiles to minimise the sum, over utterances, of the gap to the
    longest utterance of their bucket, an upper bound of the padding a batch drawn from the
    bucket can have. Cost: O(num_buckets * grid_points^2).

    Args:
        durations: seconds per utterance.
        num_buckets: buckets wanted (>= 2).
        grid_points: candidate boundaries (quantiles); more: finer placement, slower.

    Returns:
        Ascending boundaries in seconds, at most ``num_buckets - 1`` of them.

    >>> min_padding_duration_bins([1.0, 1.1, 1.2, 9.0, 9.5, 10.0], 2)
    [9.0]
    """
    if num_buckets < 2:
        raise ValueError(f"num_buckets must be >= 2, got {num_buckets}")
    d = np.sort(np.asarray(list(durations), dtype=np.float64))
    if len(d) == 0:
        raise ValueError("no durations to estimate bins from")
    grid = np.unique(np.quantile(d, np.linspace(0.0, 1.0, grid_points + 1))[1:-1])
    starts = np.concatenate([[0], np.searchsorted(d, grid, side="left"), [len(d)]])  # bucket index bounds
    n = len(starts)
    prefix = np.concatenate([[0.0], np.cumsum(d)])
    a, b = np.meshgrid(starts, starts, indexing="ij")  # cost[i, j]: utterances starts[i]..starts[j]-1
    top = d[np.clip(b - 1, 0, len(d) - 1)]
    cost = np.where(b > a, top * (b - a) - (prefix[b] - prefix[a]), np.inf)
    cost[np.arange(n), np.arange(n)] = np.inf
    best = np.full(n, np.inf)
    best[0] = 0.0
    choice = np.zeros((num_buckets + 1, n), dtype=np.int64)
    for k in range(1, num_buckets + 1):
        totals = best[:, None] + cost  # (from i, to j)
        choice[k] = np.argmin(totals, axis=0)
        best = totals[choice[k], np.arange(n)]
    j, edges = n - 1, []
    for k in range(num_buckets, 0, -1):
        j = int(choice[k][j])
        if j > 0:
            edges.append(float(d[starts[j]]))
    return sorted(set(round(e, 3) for e in edges))
