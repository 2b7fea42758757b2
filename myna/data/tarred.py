"""NeMo tarred audio datasets: write them (``convert_to_tarred_audio_dataset``) and stream them.

A tarred dataset is a folder of ``audio_{i}.tar`` shards holding the audio files, one
``tarred_audio_manifest.json`` whose ``audio_filepath`` values are the *member names* inside the
shards (each line also carries its ``shard_id``), ``sharded_manifests/manifest_{i}.json`` (the lines
of shard i), and ``metadata.yaml``. Member names flatten the original path: ``/data/d1/file.wav``
becomes ``_data_d1_file.wav`` ('/' and '.' of the stem become '_'); a file used by several
entries of one shard (different offsets) is stored once and the later entries are named
``<stem>-sub<k><ext>``.

Reading streams each shard member by member (``tarfile`` stream mode): nothing is extracted to
disk. Shards are split over DDP ranks (``scatter``) or not (``replicate``), then over the
DataLoader workers of a rank. Members find their manifest entries through a
:class:`TarMemberIndex` (shared with the Lhotse tarred source). A corrupt member or undecodable
audio is logged with its shard and member name, counted in :attr:`TarredAudioDataset.skipped`,
and skipped.

For training, :class:`TarredPasses` forms each worker's batches *before* decoding them, so a pass
can be resumed exactly (the batches already served are passed over undecoded) and an undecodable
member makes its batch smaller instead of shifting every later batch.

>>> write_tarred_dataset("train.json", "tarred/", num_shards=8, shuffle=True, shuffle_seed=1)
>>> ds = TarredAudioDataset("tarred/tarred_audio_manifest.json", "tarred/audio__OP_0..7_CL_.tar",
...                         tokenizer, sample_rate=16000, shuffle_n=256)
>>> loader = DataLoader(ds, batch_size=8, collate_fn=collate_audio_text, num_workers=2)
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import random
import re
import tarfile
import warnings
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import yaml
from torch.utils.data import IterableDataset, get_worker_info

from myna.archive import UnsafeArchiveError, safe_member_name
from myna.audio import AudioError, load_audio
from myna.data.loader import collate_audio_text
from myna.data.manifest import (
    ManifestEntry,
    count_manifest_lines,
    filter_entries,
    read_manifest,
    write_manifest,
)
from myna.data.paths import SHARD_STRATEGIES, brace_expand, expand_sharded_filepaths, manifest_paths
from myna.data.resumable import Position, WorkerStream, stream_worker_pass
from myna.data.stores import StoreError, is_url, open_stream

__all__ = [
    "TarredAudioDataset",
    "TarredPasses",
    "TarMemberIndex",
    "SkippedMembers",
    "TarredDatasetReport",
    "write_tarred_dataset",
    "flatten_member_name",
    "member_name",
    "brace_expand",
    "expand_sharded_filepaths",
    "equal_batches_per_epoch",
    "shard_index",
    "stream_tar_members",
    "SHARD_STRATEGIES",
]

logger = logging.getLogger("myna.data")

PassId = tuple[int, int]
"""(epoch, refill): the first pass of an epoch is (epoch, 0); passes that refill it count up."""


# ----------------------------------------------------------------------------- reading


class TarMemberIndex:
    """Manifest entries by tar member name: how a member read from a shard finds its utterances.

    A tarred manifest's ``audio_filepath`` is the member's name; ``<stem>-sub<k><ext>`` entries are
    further segments of the member ``<stem><ext>``, so one member may serve several entries.

    Args:
        entries: manifest entries (see :func:`myna.data.manifest.read_manifest`).
    """

    def __init__(self, entries: Iterable[ManifestEntry]):
        self.entries = list(entries)
        self._by_member: dict[str, list[int]] = defaultdict(list)
        for i, entry in enumerate(self.entries):
            self._by_member[member_name(entry.audio_filepath)].append(i)

    @classmethod
    def read(cls, manifests: Any, text_field: str = "text") -> "TarMemberIndex":
        """Index the entries of one or more tarred manifests (bad lines name file:line)."""
        return cls(read_manifest(manifests, text_field=text_field))

    def __getitem__(self, member: str) -> list[int]:
        """Indices (into :attr:`entries`) of the entries stored as ``member``; [] when none."""
        return self._by_member.get(member, [])

    def __len__(self) -> int:
        return len(self.entries)


class TarredAudioDataset(IterableDataset):
    """Stream (audio, token ids) pairs from NeMo tar shards; the tarred twin of
    :class:`myna.data.loader.AudioToTextDataset`.

    Each DataLoader worker of each rank reads its own shards, in a (seeded) shuffled order, member
    by member, and passes the items through a shuffle buffer of ``shuffle_n`` items (still
    encoded); so memory is bounded by ``shuffle_n`` encoded utterances, and the more shards, the
    better the shuffling.

    Args:
        manifest_filepath: the tarred manifest (member names in ``audio_filepath``), a list of
            manifests, or, with ``shard_manifests``, a brace pattern / list of the sharded manifests
            (``sharded_manifests/manifest__OP_0..63_CL_.json``), split over ranks like the shards.
        tarred_audio_filepaths: shard paths, a list or one brace-expandable string
            (``audio_{0..63}.tar``, also ``_OP_``/``_CL_``, ``(``, ``[``, ``<`` forms).
        tokenizer: ``encode(text) -> list[int]`` or None (empty token sequences).
        sample_rate: rate in Hz the audio is resampled to.
        shuffle_n: shuffle buffer in utterances (0: stream order). Larger: better mixing, more
            memory.
        shuffle: shuffle the shard order each epoch (training).
        shard_strategy: ``scatter`` splits the shards over ranks (each utterance once per epoch
            globally; needs at least as many shards as ranks) or ``replicate`` gives every rank
            every shard (each utterance world_size times per epoch).
        shard_manifests: read only the sharded manifests of this rank's shards.
        world_size, global_rank: DDP layout.
        min_duration, max_duration: drop entries outside (counted, see
            :func:`myna.data.manifest.filter_entries`).
        text_field: manifest key of the transcript.
        seed: shard-order and buffer seed; same seed and epoch: same stream.

    Yields:
        dicts with ``audio`` (L,) float32, ``tokens`` (U,) int64, ``index`` (int, the entry's
        position in :attr:`entries`), ``id`` (the entry's ``manifest:line``).
    """

    def __init__(
        self,
        manifest_filepath: Any,
        tarred_audio_filepaths: Any,
        tokenizer: Any,
        sample_rate: int,
        shuffle_n: int = 0,
        shuffle: bool = False,
        shard_strategy: str = "scatter",
        shard_manifests: bool = False,
        world_size: int = 1,
        global_rank: int = 0,
        min_duration: float | None = None,
        max_duration: float | None = None,
        text_field: str = "text",
        seed: int = 0,
    ):
        super().__init__()
        if shuffle_n < 0:
            raise ValueError(f"shuffle_n must be >= 0, got {shuffle_n}")
        self.shards = expand_sharded_filepaths(tarred_audio_filepaths, shard_strategy, world_size,
                                               global_rank)
        if shard_manifests:
            manifests = expand_sharded_filepaths(manifest_filepath, shard_strategy, world_size,
                                                 global_rank)
        else:
            manifests = manifest_paths(manifest_filepath)
        entries, self.filter_report = filter_entries(
            read_manifest(manifests, text_field=text_field), min_duration=min_duration,
            max_duration=max_duration, name="tarred manifest")
        if not entries:
            raise ValueError(f"tarred manifest {manifest_filepath}: no utterances left ({self.filter_report})")
        self.index = TarMemberIndex(entries)
        self.entries = self.index.entries
        self.sample_rate = sample_rate
        self.shuffle_n = shuffle_n
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.world_size = world_size
        self.global_rank = global_rank
        self.tokens = [tokenizer.encode(e.text) if tokenizer is not None else [] for e in self.entries]
        self._skip = SkippedMembers()
        # Utterances lost in this process, over its passes: never found in their shards, members cut
        # short, audio that does not decode.
        self.unread = self.cut = self.undecodable = 0

    @property
    def skipped(self) -> int:
        """Members skipped in this process (corrupt, undecodable, refused, not in the manifest)."""
        return self._skip.count

    @property
    def lost(self) -> int:
        """Manifest utterances lost in this process: never found in their shards (missing member,
        past a corrupt point), members cut short, undecodable audio. Each counts once."""
        return self.unread + self.cut + self.undecodable

    def __len__(self) -> int:
        """Utterances of this rank's manifests (NeMo's ``len``; the stream may skip some)."""
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def entries_per_shard(self) -> dict[str, int]:
        """Manifest entries per shard path of this rank (from the ``shard_id`` of each entry and
        the number in the shard's file name)."""
        return entries_per_shard(self.entries, self.shards)

    def worker_shards(self, worker_id: int, num_workers: int) -> list[str]:
        """This rank's shards that worker ``worker_id`` of ``num_workers`` reads (every
        ``num_workers``-th one, before the per-epoch shuffle)."""
        return self.shards[worker_id::num_workers]

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker_id, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # Each pass advances the epoch of this copy: the main process's copy (fresh workers each
        # epoch) or a persistent worker's own copy; either way every pass reshuffles.
        epoch, self.epoch = self.epoch, self.epoch + 1
        for item in self.encoded_items(worker_id, num_workers, (epoch, 0)):
            decoded = self.decode(item)
            if decoded is not None:
                yield decoded

    def encoded_items(self, worker_id: int, num_workers: int, pass_id: PassId) -> Iterator[tuple[int, bytes, str]]:
        """One worker's items of one pass, before decoding: ``(entry index, member bytes, shard)``
        in the order they are served (shards shuffled, then the shuffle buffer), a function of
        the seed, the pass, the rank and the worker alone."""
        shards = list(self.worker_shards(worker_id, num_workers))
        if not shards:
            logger.warning("rank %d worker %d has no shard to read (%d shards for %d workers)",
                           self.global_rank, worker_id, len(self.shards), num_workers)
            return iter(())
        epoch, refill = pass_id
        refills = (refill,) if refill else ()  # the first pass of an epoch keeps the plain epoch seed
        rng = random.Random(_mix(self.seed, epoch, self.global_rank, worker_id, *refills))
        if self.shuffle:
            rng.shuffle(shards)
        stream = self._matched(shards)
        if self.shuffle_n > 0:
            stream = _buffer_shuffle(stream, self.shuffle_n, rng)
        return stream

    def _matched(self, shards: list[str]) -> Iterator[tuple[int, bytes, str]]:
        seen: set[int] = set()  # entries served, or lost and counted already

        def skip(shard: str, member: str, reason: str) -> None:
            self._skip(shard, member, reason)
            cut = [i for i in self.index[member] if i not in seen] if reason.startswith("truncated") else []
            self.cut += len(cut)
            seen.update(cut)

        for shard in shards:
            for member, data in stream_tar_members(shard, skip):
                indices = self.index[member]
                if not indices:
                    self._skip(shard, member, "not in the manifest")
                seen.update(indices)
                for index in indices:
                    yield index, data, shard
        self._report_unread(shards, seen)

    def expected_entries(self, shards: Sequence[str]) -> list[int]:
        """Indices of the entries whose ``shard_id`` is one of ``shards`` (by the number in the
        shard's name); [] when a shard's name has no number."""
        numbers = {shard_index(shard) for shard in shards}
        if None in numbers:
            return []
        return [i for i, e in enumerate(self.entries)
                if "shard_id" in e.extra and int(e.extra["shard_id"]) in numbers]

    def _report_unread(self, shards: list[str], seen: set[int]) -> None:
        """At the end of a pass over ``shards``: count and name the manifest entries of these shards
        that were never read (member missing, cut short, or after a corrupt point)."""
        expected = self.expected_entries(shards)
        unread = [i for i in expected if i not in seen]
        if unread:
            self.unread += len(unread)
            names = ", ".join(self.entries[i].audio_filepath for i in unread[:5])
            logger.warning("end of a pass over %d shard(s): %d of their %d manifest entries were never read "
                           "(member missing or past a corrupt point): %s%s; %d utterance(s) lost so far in this "
                           "process", len(shards), len(unread), len(expected), names,
                           " ..." if len(unread) > 5 else "", self.lost)

    def decode(self, item: tuple[int, bytes, str]) -> dict | None:
        """The dataset item of an encoded item; None (logged and counted) when it cannot be decoded."""
        index, data, shard = item
        entry = self.entries[index]
        member = os.path.basename(entry.audio_filepath)
        try:
            audio = load_audio(data, self.sample_rate, entry.offset, entry.duration or None,
                               name=f"shard {shard} member {member}")
        except AudioError as err:
            self.undecodable += 1
            self._skip(shard, member, str(err))
            return None
        return {"audio": audio, "tokens": torch.tensor(self.tokens[index], dtype=torch.int64), "index": index,
                "id": entry.where}


class SkippedMembers:
    """Counts and logs the tar members a reader passes over, naming shard, member and reason.

    Called as ``skip(shard, member, reason)`` (the ``skip`` of :func:`stream_tar_members`).
    """

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, shard: str, member: str, reason: str) -> None:
        self.count += 1
        logger.warning("skipped shard %s member %s: %s (%d skipped so far in this process)",
                       shard, member, reason, self.count)


class TarredPasses(WorkerStream):
    """Batches of a :class:`TarredAudioDataset`, pass by pass, resumable inside a pass.

    Each worker cuts its encoded items into batches of ``batch_size`` (the last one smaller,
    or dropped with ``drop_last``) and decodes a batch only when it serves it; an item that
    fails to decode leaves its batch smaller (None when nothing is left). Used by
    :class:`myna.data.sampling.FixedLengthLoader`.

    Args:
        dataset: the tarred dataset of this rank.
        batch_size: utterances per batch.
        drop_last: drop each worker's last, partial batch.
        num_workers: DataLoader processes (0: read in this process).
        pin_memory: pin batches.
    """

    def __init__(self, dataset: TarredAudioDataset, batch_size: int, drop_last: bool = False,
                 num_workers: int = 0, pin_memory: bool = False):
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.pass_id: PassId = (0, 0)

    def iter_pass(self, pass_id: PassId, start: Position) -> Iterator[tuple[dict | None, Position]]:
        """Serve pass ``pass_id`` from ``start`` (an earlier position of it; {} for its start)."""
        self.pass_id = pass_id
        return stream_worker_pass(self, start, self.num_workers, self.pin_memory)

    def worker_batches(self, worker: int, num_workers: int, skip: int) -> Iterator[dict | None]:
        items = self.dataset.encoded_items(worker, num_workers, self.pass_id)
        for number, batch in enumerate(_chunks(items, self.batch_size, self.drop_last)):
            if number < skip:
                continue
            decoded = [item for item in map(self.dataset.decode, batch) if item is not None]
            yield collate_audio_text(decoded) if decoded else None


def stream_tar_members(shard: str, skip: Callable[[str, str, str], None]) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of each regular file of a tar shard, read in stream mode (nothing
    is extracted to disk).

    Args:
        shard: tar file path, or a URL of one in a store (streamed, see :func:`myna.data.stores.open_stream`).
        skip: called as ``skip(shard, member, reason)`` for a truncated member, or once when the
            archive is corrupt (the rest of that shard is then skipped).
    """
    member = "<header>"
    stream = None
    try:
        # A shard in a store streams (never cached); a dropped connection resumes at its offset.
        stream = open_stream(shard) if is_url(shard) else None
        with tarfile.open(shard if stream is None else None, mode="r|*", fileobj=stream) as tar:
            for info in tar:
                member = info.name
                if info.isdir():
                    continue
                try:
                    safe_member_name(info, shard)  # links, devices, absolute and ".." names
                except UnsafeArchiveError as err:
                    skip(shard, member, err.reason)
                    continue
                handle = tar.extractfile(info)
                data = handle.read() if handle is not None else b""
                if len(data) != info.size:
                    skip(shard, member, f"truncated ({len(data)} of {info.size} bytes)")
                    continue
                yield member, data
    except StoreError as err:
        skip(shard, member, f"unreadable ({err}); rest of the shard skipped")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        skip(shard, member, f"corrupt tar ({type(err).__name__}: {err}); rest of the shard skipped")
    finally:
        if stream is not None:
            stream.close()


def _chunks(items: Iterator[Any], size: int, drop_last: bool) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk and not drop_last:
        yield chunk


def _buffer_shuffle(stream: Iterator[Any], size: int, rng: random.Random) -> Iterator[Any]:
    """Reservoir-style shuffle: fill a buffer of ``size``, then emit a random one per new item."""
    buffer: list[Any] = []
    for item in stream:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = rng.randrange(size)
        buffer[j], item = item, buffer[j]
        yield item
    rng.shuffle(buffer)
    yield from buffer


def _mix(*numbers: int) -> int:
    """A seed from several integers (stable across processes, unlike ``hash``)."""
    seed = 0
    for n in numbers:
        seed = (seed * 1_000_003 + int(n)) % (2**63)
    return seed


def member_name(audio_filepath: str) -> str:
    """Member name of a tarred-manifest path: its base name without a ``-sub<k>`` suffix."""
    base = os.path.basename(audio_filepath)
    stem, ext = os.path.splitext(base)
    return re.sub(r"-sub\d+$", "", stem) + ext


def shard_index(path: str) -> int | None:
    """The shard number in ``audio_12.tar`` (or ``manifest_12.json``), or None."""
    match = re.search(r"_(\d+)\.[A-Za-z0-9]+$", os.path.basename(path))
    return int(match.group(1)) if match else None


def entries_per_shard(entries: Sequence[ManifestEntry], shards: Sequence[str]) -> dict[str, int]:
    """Entries per shard path, from each entry's ``shard_id`` and the number in the shard's name."""
    counts: dict[int, int] = defaultdict(int)
    for entry in entries:
        if "shard_id" in entry.extra:
            counts[int(entry.extra["shard_id"])] += 1
    out = {}
    for shard in shards:
        index = shard_index(shard)
        out[shard] = counts.get(index, 0) if index is not None else 0
    return out


def equal_batches_per_epoch(
    *,
    tarred_audio_filepaths: Any,
    entries: Sequence[ManifestEntry] = (),
    sharded_manifests: Any = None,
    shard_strategy: str,
    world_size: int,
    num_workers: int,
    batch_size: int,
    drop_last: bool,
) -> int:
    """Batches per epoch every rank can serve: the fewest any rank's workers would make.

    Computed identically on every rank without communication: from the (filtered) full manifest's
    ``shard_id`` counts (``entries``), or from the sharded manifests' line counts
    (``sharded_manifests``, one per shard). A manifest without shard ids is assumed spread evenly.

    Args:
        tarred_audio_filepaths: all shards (before the split over ranks).
        entries: the full tarred manifest's entries, when not ``sharded_manifests``.
        sharded_manifests: the per-shard manifests (pattern or list), or None.
        shard_strategy, world_size: how shards are split over ranks.
        num_workers: DataLoader workers per rank (>= 1; each batches its own shards).
        batch_size, drop_last: as the loader.
    """
    shards = expand_sharded_filepaths(tarred_audio_filepaths, "replicate")
    if sharded_manifests is not None:
        manifests = expand_sharded_filepaths(sharded_manifests, "replicate")
        per_shard = {shard: count_manifest_lines(manifest) for shard, manifest in zip(shards, manifests)}
    else:
        per_shard = entries_per_shard(entries, shards)
        if not any(per_shard.values()):
            share = len(entries) / max(1, len(per_shard))
            per_shard = {shard: int(share) for shard in per_shard}
    workers = max(1, num_workers)
    counts = []
    for rank in range(world_size):
        mine = shards if world_size == 1 else _quiet_split(tarred_audio_filepaths, shard_strategy, world_size, rank)
        per_worker = [sum(per_shard.get(s, 0) for s in mine[w::workers]) for w in range(workers)]
        counts.append(expected_batches(per_worker, batch_size, drop_last))
    return min(counts)


def _quiet_split(shards: Any, strategy: str, world_size: int, rank: int) -> list[str]:
    with warnings.catch_warnings():  # each rank's dataset warns about an uneven split itself
        warnings.simplefilter("ignore")
        return expand_sharded_filepaths(shards, strategy, world_size, rank)


def expected_batches(counts: Sequence[int], batch_size: int, drop_last: bool) -> int:
    """Batches a DataLoader makes from workers holding ``counts`` utterances each (each worker
    batches its own stream)."""
    if drop_last:
        return sum(c // batch_size for c in counts)
    return sum(math.ceil(c / batch_size) for c in counts)


# ----------------------------------------------------------------------------- writing


@dataclass
class TarredDatasetReport:
    """What :func:`write_tarred_dataset` wrote (one per bucket with ``buckets_num > 1``)."""

    target_dir: Path
    num_shards: int
    num_samples_per_shard: int
    written: int
    discarded: int
    tar_files: list[Path] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{self.target_dir}: {self.written} utterances in {self.num_shards} shards of "
                f"{self.num_samples_per_shard}; {self.discarded} left over and not written")


def flatten_member_name(audio_filepath: str) -> str:
    """NeMo's member name for an audio path: '/' and '.' of the stem become '_'.

    >>> flatten_member_name("/data/d1/file.wav")
    '_data_d1_file.wav'
    """
    stem, ext = os.path.splitext(audio_filepath)
    return stem.replace("/", "_").replace(".", "_") + ext


def write_tarred_dataset(
    manifest_path: str | Sequence[str],
    target_dir: str | os.PathLike,
    num_shards: int,
    min_duration: float | None = None,
    max_duration: float | None = None,
    shuffle: bool = False,
    shuffle_seed: int | None = None,
    buckets_num: int = 1,
    workers: int = 1,
    text_field: str = "text",
) -> list[TarredDatasetReport]:
    """Write a NeMo tarred dataset (``convert_to_tarred_audio_dataset.py``'s layout and flags).

    Entries outside ``[min_duration, max_duration]`` are dropped (counted and logged). With
    ``shuffle`` the entries are shuffled (``shuffle_seed``) before being cut into ``num_shards``
    contiguous shards of ``len // num_shards`` entries each; as NeMo does, the remainder is not
    written, so every shard holds the same number (the count is logged).

    With ``buckets_num > 1`` the range ``[min_duration, max_duration]`` is cut into that many
    equal-width duration ranges and one tarred dataset is written per range under
    ``target_dir/bucket1 .. bucketN`` (bucket 1 the shortest; ranges are half-open except the
    last, so an entry lands in exactly one bucket).

    Args:
        manifest_path: NeMo manifest(s); relative audio paths resolve against the manifest.
        target_dir: output folder (created).
        num_shards: shards per (bucket) dataset.
        min_duration, max_duration: seconds (both required with ``buckets_num > 1``).
        shuffle, shuffle_seed: shuffle entries before sharding.
        buckets_num: duration buckets.
        workers: processes writing shards in parallel.
        text_field: manifest key of the transcript.

    Returns:
        one report per dataset written.

    Raises:
        ValueError: bad counts, fewer entries than shards, or two different audio files that
            flatten to the same member name in one shard.
    """
    if num_shards < 1:
        raise ValueError(f"--num_shards must be >= 1, got {num_shards}")
    if buckets_num < 1:
        raise ValueError(f"--buckets_num must be >= 1, got {buckets_num}")
    entries = read_manifest(manifest_path, text_field=text_field)
    entries, _ = filter_entries(entries, min_duration=min_duration, max_duration=max_duration,
                                name="data tar")
    target_dir = Path(target_dir)
    if buckets_num == 1:
        return [_write_one(entries, target_dir, num_shards, shuffle, shuffle_seed, workers,
                           text_field, min_duration, max_duration)]
    if min_duration is None or max_duration is None:
        raise ValueError("--buckets_num > 1 needs --min_duration and --max_duration")
    width = (max_duration - min_duration) / buckets_num
    reports = []
    for b in range(buckets_num):
        low = min_duration + b * width
        high = low + width
        last = b == buckets_num - 1
        part = [e for e in entries if low <= e.duration and (e.duration < high or (last and e.duration <= max_duration))]
        logger.info("bucket%d: [%.3f, %.3f%s s: %d utterances", b + 1, low, high, "]" if last else ")", len(part))
        reports.append(_write_one(part, target_dir / f"bucket{b + 1}", num_shards, shuffle,
                                  shuffle_seed, workers, text_field, low, high))
    return reports


def _write_one(entries: list[ManifestEntry], target_dir: Path, num_shards: int, shuffle: bool,
               shuffle_seed: int | None, workers: int, text_field: str,
               min_duration: float | None, max_duration: float | None) -> TarredDatasetReport:
    if len(entries) < num_shards:
        raise ValueError(f"{target_dir}: {len(entries)} utterances cannot fill {num_shards} shards")
    entries = list(entries)
    if shuffle:
        random.Random(shuffle_seed).shuffle(entries)
    per_shard = len(entries) // num_shards
    discarded = len(entries) - per_shard * num_shards
    if discarded:
        logger.warning("%s: %d utterance(s) left over after %d shards of %d are not written "
                       "(NeMo keeps shards equal)", target_dir, discarded, num_shards, per_shard)
    target_dir.mkdir(parents=True, exist_ok=True)
    (target_dir / "sharded_manifests").mkdir(exist_ok=True)
    jobs = [(entries[i * per_shard : (i + 1) * per_shard], str(target_dir), i, text_field)
            for i in range(num_shards)]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(min(workers, num_shards)) as pool:
            shard_items = pool.starmap(_write_shard, jobs)
    else:
        shard_items = [_write_shard(*job) for job in jobs]
    all_items = [item for items in shard_items for item in items]
    write_manifest(all_items, target_dir / "tarred_audio_manifest.json")
    metadata = {
        "created_datetime": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        "version": 0,
        "num_samples_per_shard": per_shard,
        "is_concatenated_manifest": False,
        "dataset_config": {
            "num_shards": num_shards, "shuffle": shuffle, "max_duration": max_duration,
            "min_duration": min_duration, "shuffle_seed": shuffle_seed, "sort_in_shards": False,
            "keep_files_together": False, "force_codec": None, "use_lhotse": False,
            "use_bucketing": False, "num_buckets": None, "bucket_duration_bins": None,
        },
        "history": [],
    }
    tmp = target_dir / "metadata.yaml.tmp"
    tmp.write_text(yaml.safe_dump(metadata, sort_keys=False))
    os.replace(tmp, target_dir / "metadata.yaml")
    report = TarredDatasetReport(target_dir, num_shards, per_shard, len(all_items), discarded,
                                 [target_dir / f"audio_{i}.tar" for i in range(num_shards)])
    logger.info("%s", report)
    return report


def _write_shard(entries: list[ManifestEntry], target_dir: str, shard_id: int,
                 text_field: str) -> list[dict]:
    """Write ``audio_{shard_id}.tar`` and ``sharded_manifests/manifest_{shard_id}.json``."""
    target = Path(target_dir)
    count: dict[str, int] = {}
    source_of: dict[str, str] = {}
    items = []
    tmp = target / f"audio_{shard_id}.tar.tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.GNU_FORMAT) as tar:  # no per-member PAX headers
        for entry in entries:
            name = flatten_member_name(entry.audio_filepath)
            if name not in count:
                if not os.path.isfile(entry.audio_filepath):
                    raise ValueError(f"{entry.where}: audio file not found: {entry.audio_filepath}")
                tar.add(entry.audio_filepath, arcname=name)
                count[name] = 1
                source_of[name] = entry.audio_filepath
                member = name
            else:
                if source_of[name] != entry.audio_filepath:
                    raise ValueError(f"{entry.where}: {entry.audio_filepath} and {source_of[name]} "
                                     f"both flatten to member name {name!r} in shard {shard_id}")
                stem, ext = os.path.splitext(name)
                member = f"{stem}-sub{count[name]}{ext}"
                count[name] += 1
            item = entry.to_dict(text_field=text_field)
            item["audio_filepath"] = member
            item["shard_id"] = shard_id
            items.append(item)
    os.replace(tmp, target / f"audio_{shard_id}.tar")
    write_manifest(items, target / "sharded_manifests" / f"manifest_{shard_id}.json")
    return items
