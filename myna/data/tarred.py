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
DataLoader workers of a rank. A corrupt member or undecodable audio is logged with its shard and
member name, counted in :attr:`TarredAudioDataset.skipped`, and skipped.

>>> write_tarred_dataset("train.json", "tarred/", num_shards=8, shuffle=True, shuffle_seed=1)
>>> ds = TarredAudioDataset("tarred/tarred_audio_manifest.json", "tarred/audio__OP_0..7_CL_.tar",
...                         tokenizer, sample_rate=16000, shuffle_n=256)
>>> loader = DataLoader(ds, batch_size=8, collate_fn=collate_audio_text, num_workers=2)
"""

from __future__ import annotations

import datetime
import io
import json
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
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import soundfile as sf
import soxr
import torch
import yaml
from torch.utils.data import IterableDataset, get_worker_info

from myna.audio import AudioError
from myna.data.manifest import ManifestEntry, filter_entries, read_manifest, write_manifest

__all__ = [
    "TarredAudioDataset",
    "TarredDatasetReport",
    "write_tarred_dataset",
    "flatten_member_name",
    "brace_expand",
    "expand_sharded_filepaths",
    "decode_audio_bytes",
    "shard_index",
    "stream_tar_members",
]

logger = logging.getLogger("myna.data")

# NeMo's alternative brace spellings (for shells and config systems that mangle '{' and '}').
_OPEN_KEYS = ("(", "[", "<", "_OP_")
_CLOSE_KEYS = (")", "]", ">", "_CL_")
SHARD_STRATEGIES = ("scatter", "replicate")


# ----------------------------------------------------------------------------- reading


class TarredAudioDataset(IterableDataset):
    """Stream (audio, token ids) pairs from NeMo tar shards; the tarred twin of
    :class:`myna.data.loader.AudioToTextDataset`.

    Each DataLoader worker of each rank reads its own shards, in a (seeded) shuffled order, member
    by member, and passes the items through a shuffle buffer of ``shuffle_n`` items; so memory is
    bounded by ``shuffle_n`` utterances, and the more shards, the better the shuffling.

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
        position in :attr:`entries`).
    """

    def __init__(
        self,
        manifest_filepath: str | Sequence[str],
        tarred_audio_filepaths: str | Sequence[str],
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
            manifests = _as_path_list(manifest_filepath)
        entries = []
        for path in manifests:
            entries.extend(read_manifest(path, text_field=text_field))
        self.entries, self.filter_report = filter_entries(
            entries, min_duration=min_duration, max_duration=max_duration, name="tarred manifest")
        self.sample_rate = sample_rate
        self.shuffle_n = shuffle_n
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.world_size = world_size
        self.global_rank = global_rank
        self.tokens = [tokenizer.encode(e.text) if tokenizer is not None else [] for e in self.entries]
        # member name -> entry indices; manifest paths were resolved against the manifest folder,
        # and "-sub<k>" marks further segments of one stored file.
        self.by_member: dict[str, list[int]] = defaultdict(list)
        for i, entry in enumerate(self.entries):
            self.by_member[_member_of(entry.audio_filepath)].append(i)
        self.skipped = 0  # members skipped in this process (corrupt, undecodable, unknown)

    def __len__(self) -> int:
        """Utterances of this rank's manifests (NeMo's ``len``; the stream may skip some)."""
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def entries_per_shard(self) -> dict[str, int]:
        """Manifest entries per shard path of this rank (from the ``shard_id`` of each entry and
        the number in the shard's file name)."""
        counts: dict[int, int] = defaultdict(int)
        for entry in self.entries:
            if "shard_id" in entry.extra:
                counts[int(entry.extra["shard_id"])] += 1
        out = {}
        for shard in self.shards:
            index = shard_index(shard)
            out[shard] = counts.get(index, 0) if index is not None else 0
        return out

    def worker_shards(self, worker_id: int, num_workers: int) -> list[str]:
        """This rank's shards that worker ``worker_id`` of ``num_workers`` reads (every
        ``num_workers``-th one, before the per-epoch shuffle)."""
        return self.shards[worker_id::num_workers]

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker_id, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        shards = list(self.worker_shards(worker_id, num_workers))
        if not shards:
            logger.warning("rank %d worker %d has no shard to read (%d shards for %d workers)",
                           self.global_rank, worker_id, len(self.shards), num_workers)
            return
        # Each pass advances the epoch of this copy: the main process's copy (fresh workers each
        # epoch) or a persistent worker's own copy; either way every pass reshuffles.
        epoch, self.epoch = self.epoch, self.epoch + 1
        rng = random.Random(_mix(self.seed, epoch, self.global_rank, worker_id))
        if self.shuffle:
            rng.shuffle(shards)
        stream = self._samples(shards)
        if self.shuffle_n > 0:
            stream = _buffer_shuffle(stream, self.shuffle_n, rng)
        yield from stream

    def _samples(self, shards: list[str]) -> Iterator[dict]:
        for shard in shards:
            for member, data in self._members(shard):
                indices = self.by_member.get(member)
                if not indices:
                    self._skip(shard, member, "not in the manifest")
                    continue
                for index in indices:
                    entry = self.entries[index]
                    try:
                        audio = decode_audio_bytes(data, self.sample_rate, entry.offset,
                                                   entry.duration or None, name=member)
                    except AudioError as err:
                        self._skip(shard, member, str(err))
                        continue
                    yield {"audio": audio, "tokens": torch.tensor(self.tokens[index], dtype=torch.int64),
                           "index": index}

    def _members(self, shard: str) -> Iterator[tuple[str, bytes]]:
        return stream_tar_members(shard, self._skip)

    def _skip(self, shard: str, member: str, reason: str) -> None:
        self.skipped += 1
        logger.warning("skipped shard %s member %s: %s (%d skipped so far in this process)",
                       shard, member, reason, self.skipped)


def stream_tar_members(shard: str, skip: Callable[[str, str, str], None]) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of each regular file of a tar shard, read in stream mode (nothing
    is extracted to disk).

    Args:
        shard: tar file path.
        skip: called as ``skip(shard, member, reason)`` for a truncated member, or once when the
            archive is corrupt (the rest of that shard is then skipped).
    """
    member = "<header>"
    try:
        with tarfile.open(shard, mode="r|*") as tar:
            for info in tar:
                member = info.name
                if not info.isfile():
                    continue
                handle = tar.extractfile(info)
                data = handle.read() if handle is not None else b""
                if len(data) != info.size:
                    skip(shard, member, f"truncated ({len(data)} of {info.size} bytes)")
                    continue
                yield member, data
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        skip(shard, member, f"corrupt tar ({type(err).__name__}: {err}); rest of the shard skipped")


def decode_audio_bytes(data: bytes, sample_rate: int, offset: float = 0.0,
                       duration: float | None = None, name: str = "<bytes>") -> torch.Tensor:
    """Decode (a segment of) an in-memory audio file as mono float32 at ``sample_rate``.

    Args:
        data: the file's bytes (any format libsndfile reads).
        sample_rate: wanted rate in Hz (soxr "HQ" resampling when the file's differs).
        offset: segment start in seconds.
        duration: segment length in seconds (None: to the end); clipped to the file.
        name: for error messages (e.g. the tar member).

    Returns:
        waveform (samples,) float32.

    Raises:
        AudioError: undecodable bytes or an empty segment, naming ``name``.
    """
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate = f.samplerate
            start = int(round(offset * rate))
            if start > 0:
                f.seek(start)
            count = -1 if duration is None else max(1, int(round(duration * rate)))
            frames = f.read(count, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(f"cannot decode audio {name}: {err}") from err
    if frames.shape[0] == 0:
        raise AudioError(f"no samples in {name} (offset {offset} s, duration {duration} s)")
    audio = frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate, quality="HQ")
    return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))


def _buffer_shuffle(stream: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """Reservoir-style shuffle: fill a buffer of ``size``, then emit a random one per new item."""
    buffer: list[dict] = []
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


def _member_of(audio_filepath: str) -> str:
    """Member name of a tarred-manifest path: its base name without a ``-sub<k>`` suffix."""
    base = os.path.basename(audio_filepath)
    stem, ext = os.path.splitext(base)
    return re.sub(r"-sub\d+$", "", stem) + ext


def shard_index(path: str) -> int | None:
    """The shard number in ``audio_12.tar`` (or ``manifest_12.json``), or None."""
    match = re.search(r"_(\d+)\.[A-Za-z0-9]+$", os.path.basename(path))
    return int(match.group(1)) if match else None


# ----------------------------------------------------------------------------- shard lists


def brace_expand(pattern: str) -> list[str]:
    """Bash-style brace expansion: ``a_{0..2}.tar`` -> ``a_0.tar, a_1.tar, a_2.tar``.

    Handles comma lists (``{a,b}``), numeric ranges with an optional step and zero padding
    (``{00..10..2}``), several and nested groups. A brace group without a comma or range stays
    literal.
    """
    start = _find_group(pattern)
    if start is None:
        return [pattern]
    open_at, close_at = start
    head, body, tail = pattern[:open_at], pattern[open_at + 1 : close_at], pattern[close_at + 1 :]
    tails = brace_expand(tail)
    alternatives = _range_alternatives(body)
    if alternatives is None:
        parts = _split_top_level(body)
        if len(parts) == 1:  # literal braces (their content may still hold groups)
            return [head + "{" + b + "}" + t for b in brace_expand(body) for t in tails]
        alternatives = [x for part in parts for x in brace_expand(part)]
    return [head + alt + t for alt in alternatives for t in tails]


def _find_group(text: str) -> tuple[int, int] | None:
    depth, open_at = 0, -1
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                open_at = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                return open_at, i
    return None


def _split_top_level(body: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in body:
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += ch == "{"
        depth -= ch == "}"
        current.append(ch)
    parts.append("".join(current))
    return parts


def _range_alternatives(body: str) -> list[str] | None:
    match = re.fullmatch(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?", body)
    if not match:
        return None
    first, last = match.group(1), match.group(2)
    step = abs(int(match.group(3) or 1)) or 1
    a, b = int(first), int(last)
    padded = any(len(x.lstrip("-")) > 1 and x.lstrip("-").startswith("0") for x in (first, last))
    width = max(len(first), len(last)) if padded else 0
    values = range(a, b + 1, step) if a <= b else range(a, b - 1, -step)
    return [str(v).zfill(width) if width else str(v) for v in values]


def expand_sharded_filepaths(
    sharded_filepaths: str | Sequence[str],
    shard_strategy: str = "scatter",
    world_size: int = 1,
    global_rank: int = 0,
) -> list[str]:
    """NeMo's shard list: expand the braces, then keep this rank's share.

    Args:
        sharded_filepaths: a list of paths, or one string with brace groups, where ``(``, ``[``,
            ``<`` and ``_OP_`` stand for ``{`` and ``)``, ``]``, ``>`` and ``_CL_`` for ``}``.
        shard_strategy: ``scatter``: rank r keeps the r-th contiguous block of
            ``len // world_size`` shards (the remainder is not read; a warning says so);
            ``replicate``: every rank keeps all shards.
        world_size, global_rank: DDP layout.

    Returns:
        this rank's shard paths.

    Raises:
        ValueError: unknown strategy, no shards, or fewer shards than ranks with ``scatter``.
    """
    if shard_strategy not in SHARD_STRATEGIES:
        raise ValueError(f"tarred_shard_strategy must be one of {SHARD_STRATEGIES}, got {shard_strategy!r}")
    if isinstance(sharded_filepaths, (str, os.PathLike)):
        text = os.fspath(sharded_filepaths)
        for key in _OPEN_KEYS:
            text = text.replace(key, "{")
        for key in _CLOSE_KEYS:
            text = text.replace(key, "}")
        paths = brace_expand(text)
    else:
        paths = [p for item in sharded_filepaths for p in brace_expand(os.fspath(item))]
    if not paths:
        raise ValueError(f"no shard path in {sharded_filepaths!r}")
    if world_size > 1 and shard_strategy == "scatter":
        if len(paths) < world_size:
            raise ValueError(f"{len(paths)} shards cannot be scattered over {world_size} ranks "
                             f"(use tarred_shard_strategy=replicate or more shards): {sharded_filepaths!r}")
        if len(paths) % world_size != 0:
            message = (f"number of shards in tarred dataset ({len(paths)}) is not divisible by the "
                       f"number of distributed workers ({world_size}); the last "
                       f"{len(paths) % world_size} shard(s) are not read")
            logger.warning(message)
            warnings.warn(message, stacklevel=2)
        per_rank = len(paths) // world_size
        paths = paths[per_rank * global_rank : per_rank * (global_rank + 1)]
    return paths


def _as_path_list(value: str | Sequence[str]) -> list[str]:
    if isinstance(value, (str, os.PathLike)):
        return [p for p in os.fspath(value).split(",") if p.strip()]
    return [os.fspath(v) for v in value]


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


def count_manifest_lines(path: str) -> int:
    """Non-blank lines of a manifest (cheap; no JSON parsing)."""
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def expected_batches(counts: Sequence[int], batch_size: int, drop_last: bool) -> int:
    """Batches a DataLoader makes from workers holding ``counts`` utterances each (each worker
    batches its own stream)."""
    if drop_last:
        return sum(c // batch_size for c in counts)
    return sum(math.ceil(c / batch_size) for c in counts)
