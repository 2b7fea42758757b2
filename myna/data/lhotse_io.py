"""Dynamic batching with Lhotse (NeMo's ``use_lhotse: true``): NeMo data as lazy Lhotse cuts.

NeMo manifests and NeMo tarred datasets become lazy :class:`lhotse.CutSet` sources
(:class:`LazyNeMoIterator`, :class:`LazyNeMoTarredIterator`: nothing is read before iteration);
Lhotse ``cuts_path`` and ``shar_path`` are read by Lhotse itself. ``input_cfg`` mixes sources
with weights (a group's weight multiplies through to its members) and attaches each source's
``tags`` to every example. Batches are built by Lhotse's ``DynamicBucketingSampler`` (or
``DynamicCutSampler`` without bucketing) under a total-duration budget (``batch_duration``) and
turned into myna's batch dicts by :class:`LhotseAudioTextDataset`.

Training iterates forever (each source repeats), as NeMo does; an epoch is then
``trainer.limit_train_batches`` steps (set it, and ``trainer.max_steps``). ``force_finite: true``
gives one pass instead.

Keys (``model.train_ds``), with NeMo's meaning: ``batch_duration`` (seconds per batch),
``batch_size`` (cap on utterances per batch), ``quadratic_duration``, ``use_bucketing``,
``num_buckets``, ``bucket_duration_bins``, ``num_cuts_for_bins_estimate``, ``bucket_buffer_size``,
``shuffle_buffer_size``, ``seed`` and ``shard_seed`` (int | "trng" | "randomized"), ``text_field``,
``lang_field``, ``min_duration``/``max_duration``, ``manifest_filepath`` (a path, a list, or
``[[path, weight], ...]``), ``is_tarred`` + ``tarred_audio_filepaths``, ``cuts_path``,
``shar_path``, ``input_cfg``.

>>> loader = build_lhotse_dataloader({"manifest_filepath": "train.json", "batch_duration": 300,
...     "use_bucketing": True, "num_buckets": 30, "shuffle": True}, tokenizer, train=True, seed=1)
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import secrets
import sys
import types
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import soxr
import torch
import yaml

from myna.audio import AudioError, load_audio
from myna.data.loader import collate_audio_text
from myna.data.manifest import ManifestError, _parse_item
from myna.data.sampling import min_padding_duration_bins
from myna.data.tarred import decode_audio_bytes, expand_sharded_filepaths, stream_tar_members

__all__ = [
    "LazyNeMoIterator",
    "LazyNeMoTarredIterator",
    "LhotseAudioTextDataset",
    "read_cutset_from_config",
    "flatten_input_cfg",
    "build_lhotse_dataloader",
    "estimate_duration_bins",
    "parse_weighted_manifests",
]

logger = logging.getLogger("myna.data")

SOURCE_TYPES = ("nemo", "nemo_tarred", "lhotse", "lhotse_shar", "group")


from lhotse import CutSet, MonoCut, SupervisionSegment
from lhotse.audio import AudioSource, Recording
from lhotse.dataset import DynamicBucketingSampler, DynamicCutSampler, IterableDatasetWrapper
from lhotse.dataset.dataloading import make_worker_init_fn, resolve_seed
from lhotse.dataset.sampling.dynamic_bucketing import estimate_duration_buckets


# ----------------------------------------------------------------------------- sources


class LazyNeMoIterator:
    """A NeMo manifest read lazily, line by line, as Lhotse cuts (no audio or header is read).

    Each cut covers ``[offset, offset + duration)`` of its file, has one supervision with the
    text (and ``language`` from ``lang_field``), and carries ``tags`` in ``cut.custom``.

    Args:
        path: NeMo manifest (relative audio paths resolve against its folder).
        text_field, lang_field: manifest keys of the transcript and the language.
        sample_rate: rate recorded in the cut (audio is resampled to it when loaded).
        tags: attached to every cut.
    """

    def __init__(self, path: str | os.PathLike, text_field: str = "text", lang_field: str = "lang",
                 sample_rate: int = 16000, tags: Mapping[str, Any] | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ManifestError(f"manifest not found: {self.path}")
        self.text_field = text_field
        self.lang_field = lang_field
        self.sample_rate = sample_rate
        self.tags = dict(tags or {})

    def __iter__(self) -> Iterator[MonoCut]:
        base = self.path.resolve().parent
        name = str(self.path)
        with open(self.path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ManifestError(f"{name}:{line_no}: malformed JSON ({err.msg})") from err
                lang = item.get(self.lang_field)
                entry = _parse_item(item, base, f"{name}:{line_no}", self.text_field, False, name, line_no)
                yield _make_cut(f"{self.path.stem}-{line_no}", entry.audio_filepath, "file",
                                entry.audio_filepath, entry.offset, entry.duration, entry.text, lang,
                                self.sample_rate, self.tags)

    def __len__(self) -> int:
        with open(self.path, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())


class LazyNeMoTarredIterator:
    """NeMo tar shards read lazily as Lhotse cuts holding the member bytes in memory.

    ``manifest_filepath`` is either one tarred manifest (read once, member -> entries) or a
    brace pattern / list of sharded manifests matching the shards one to one (each read when its
    shard is). Shards are visited in order, or shuffled with ``shard_seed`` (resolved where the
    iteration runs: "trng" differs on every process, "randomized" derives from the worker's and
    rank's seed). A corrupt shard is logged with the shard and member and skipped.

    Args:
        manifest_filepath: tarred manifest(s), see above.
        tarred_audio_filepaths: shard list or brace pattern (NeMo's forms).
        shuffle_shards: shuffle the shard order on each pass.
        shard_seed: int | "trng" | "randomized".
        text_field, lang_field, sample_rate, tags: as :class:`LazyNeMoIterator`.
    """

    def __init__(self, manifest_filepath: str | Sequence[str], tarred_audio_filepaths: str | Sequence[str],
                 shuffle_shards: bool = False, shard_seed: int | str = "trng", text_field: str = "text",
                 lang_field: str = "lang", sample_rate: int = 16000, tags: Mapping[str, Any] | None = None):
        self.shards = expand_sharded_filepaths(tarred_audio_filepaths, "replicate")
        manifests = expand_sharded_filepaths(manifest_filepath, "replicate")
        if len(manifests) not in (1, len(self.shards)):
            raise ValueError(f"{len(manifests)} manifests for {len(self.shards)} shards: give one tarred "
                             f"manifest or one sharded manifest per shard ({manifest_filepath!r})")
        self.manifests = manifests
        self.shuffle_shards = shuffle_shards
        self.shard_seed = shard_seed
        self.text_field = text_field
        self.lang_field = lang_field
        self.sample_rate = sample_rate
        self.tags = dict(tags or {})
        self.skipped = 0

    def _entries(self, manifest: str) -> dict[str, list[tuple[int, dict]]]:
        from myna.data.tarred import _member_of

        by_member: dict[str, list[tuple[int, dict]]] = {}
        with open(manifest, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if line.strip():
                    item = json.loads(line)
                    by_member.setdefault(_member_of(item["audio_filepath"]), []).append((line_no, item))
        return by_member

    def _skip(self, shard: str, member: str, reason: str) -> None:
        self.skipped += 1
        logger.warning("skipped shard %s member %s: %s (%d skipped so far in this process)",
                       shard, member, reason, self.skipped)

    def __iter__(self) -> Iterator[MonoCut]:
        order = list(range(len(self.shards)))
        if self.shuffle_shards:
            random.Random(resolve_seed(self.shard_seed)).shuffle(order)
        shared = self._entries(self.manifests[0]) if len(self.manifests) == 1 else None
        for i in order:
            shard = self.shards[i]
            by_member = shared if shared is not None else self._entries(self.manifests[i])
            for member, data in stream_tar_members(shard, self._skip):
                if member not in by_member:
                    self._skip(shard, member, "not in the manifest")
                    continue
                for line_no, item in by_member[member]:
                    text = item.get(self.text_field, "")
                    offset = float(item.get("offset") or 0.0)
                    cut = _make_cut(f"{Path(shard).stem}-{member}-{line_no}", member, "memory", data,
                                    offset, float(item["duration"]), text, item.get(self.lang_field),
                                    self.sample_rate, self.tags)
                    cut.custom["shard"] = shard
                    yield cut

    def __len__(self) -> int:
        return sum(len(v) for m in self.manifests for v in self._entries(m).values())


def _make_cut(cut_id: str, recording_id: str, source_type: str, source: str | bytes, offset: float,
              duration: float, text: str, language: str | None, sample_rate: int,
              tags: Mapping[str, Any]) -> MonoCut:
    end = offset + duration
    recording = Recording(id=recording_id, sources=[AudioSource(type=source_type, channels=[0], source=source)],
                          sampling_rate=sample_rate, num_samples=max(1, round(end * sample_rate)), duration=end)
    supervision = SupervisionSegment(id=cut_id, recording_id=recording_id, start=offset, duration=duration,
                                     text=text, language=language)
    custom = {"myna_nemo": True}
    if tags:
        custom.update(tags)
        custom["tags"] = dict(tags)
    return MonoCut(id=cut_id, start=offset, duration=duration, channel=0, supervisions=[supervision],
                   recording=recording, custom=custom)


def _attach_tags(cut: Any, tags: Mapping[str, Any]) -> Any:
    cut.custom = dict(cut.custom or {})
    cut.custom.update(tags)
    cut.custom["tags"] = {**cut.custom.get("tags", {}), **tags}
    return cut


# ----------------------------------------------------------------------------- config


def parse_weighted_manifests(value: Any) -> list[tuple[str, float]]:
    """``a.json`` / ``a.json,b.json`` / ``[a.json, b.json]`` / ``[[a.json, 0.7], [b.json, 0.3]]``
    (also as a YAML string) -> [(path, weight)], weight 1 when not given."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = yaml.safe_load(text)
        else:
            return [(p.strip(), 1.0) for p in text.split(",") if p.strip()]
    out = []
    for item in value:
        if isinstance(item, (str, os.PathLike)):
            out.append((os.fspath(item), 1.0))
        elif isinstance(item, Sequence) and len(item) == 2 and isinstance(item[1], (int, float)):
            if item[1] < 0:
                raise ValueError(f"weight of {item[0]} must be >= 0, got {item[1]}")
            out.append((os.fspath(item[0]), float(item[1])))
        else:
            raise ValueError(f"expected a path or [path, weight], got {item!r}")
    if not out:
        raise ValueError(f"no manifest in {value!r}")
    return out


def flatten_input_cfg(input_cfg: Any, weight: float = 1.0,
                      tags: Mapping[str, Any] | None = None) -> list[tuple[dict, float, dict]]:
    """Leaves of an ``input_cfg`` tree as (source dict, probability, tags).

    A node's probability is its ``weight`` divided by the sum of its siblings' weights, times its
    parent's probability (nested muxing, flattened), so a group's weight multiplies through to its
    members. Tags accumulate from the outside in (inner values win).

    Args:
        input_cfg: list of source dicts (``type``: nemo | nemo_tarred | lhotse | lhotse_shar |
            group; ``weight``; ``tags``; a group's own ``input_cfg``), or a YAML file path.
    """
    if isinstance(input_cfg, (str, os.PathLike)):
        path = Path(input_cfg)
        if not path.is_file():
            raise ValueError(f"input_cfg file not found: {path}")
        input_cfg = yaml.safe_load(path.read_text())
    if not isinstance(input_cfg, Sequence) or not input_cfg:
        raise ValueError(f"input_cfg must be a non-empty list of sources, got {input_cfg!r}")
    weights = []
    for node in input_cfg:
        if not isinstance(node, Mapping) or node.get("type") not in SOURCE_TYPES:
            raise ValueError(f"input_cfg entry needs a type in {SOURCE_TYPES}: {node!r}")
        w = float(node.get("weight", 1.0))
        if w < 0:
            raise ValueError(f"input_cfg weight must be >= 0: {node!r}")
        weights.append(w)
    total = sum(weights)
    if total <= 0:
        raise ValueError(f"input_cfg weights sum to 0: {input_cfg!r}")
    leaves = []
    for node, w in zip(input_cfg, weights):
        p = weight * w / total
        node_tags = {**(tags or {}), **dict(node.get("tags") or {})}
        if node["type"] == "group":
            leaves.extend(flatten_input_cfg(node["input_cfg"], p, node_tags))
        else:
            leaves.append((dict(node), p, node_tags))
    return leaves


def _leaf_cutset(node: Mapping[str, Any], cfg: Mapping[str, Any], tags: Mapping[str, Any],
                 shard_seed: Any) -> tuple[CutSet, bool]:
    kind = node["type"]
    text_field = node.get("text_field", cfg.get("text_field", "text"))
    lang_field = node.get("lang_field", cfg.get("lang_field", "lang"))
    sr = int(cfg.get("sample_rate", 16000))
    shuffle = bool(cfg.get("shuffle", False))
    if kind == "nemo":
        cutsets = [CutSet(LazyNeMoIterator(p, text_field, lang_field, sr, tags))
                   for p, _ in parse_weighted_manifests(node["manifest_filepath"])]
        return (cutsets[0] if len(cutsets) == 1 else CutSet.mux(*cutsets, seed=shard_seed)), False
    if kind == "nemo_tarred":
        return CutSet(LazyNeMoTarredIterator(node["manifest_filepath"], node["tarred_audio_filepaths"],
                                             shuffle, shard_seed, text_field, lang_field, sr, tags)), True
    if kind == "lhotse":
        cuts = CutSet.from_file(node["cuts_path"]) if not _is_lazy_path(node["cuts_path"]) \
            else CutSet.from_jsonl_lazy(node["cuts_path"])
    else:  # lhotse_shar
        shar = node["shar_path"]
        cuts = CutSet.from_shar(in_dir=shar, shuffle_shards=shuffle, seed=shard_seed
                                if shard_seed != "trng" else "randomized") if isinstance(shar, (str, os.PathLike)) \
            else CutSet.from_shar(fields=dict(shar), shuffle_shards=shuffle)
    if tags:
        cuts = cuts.map(partial(_attach_tags, tags=dict(tags)))
    return cuts, kind == "lhotse_shar"


def _is_lazy_path(path: Any) -> bool:
    return str(path).endswith((".jsonl", ".jsonl.gz"))


def read_cutset_from_config(cfg: Mapping[str, Any], infinite: bool = False) -> tuple[CutSet, bool]:
    """The (lazy) CutSet a dataset config describes, and whether it streams shards.

    Sources, first match wins: ``input_cfg``; ``cuts_path``; ``shar_path``;
    ``manifest_filepath`` (+ ``tarred_audio_filepaths`` when ``is_tarred``; weighted lists are
    muxed). With ``infinite`` every source repeats before muxing, so the weights hold exactly for
    as long as training runs. Durations outside ``[min_duration, max_duration]`` are filtered.
    """
    shard_seed = cfg.get("shard_seed", "trng")
    if cfg.get("input_cfg"):
        leaves = flatten_input_cfg(cfg["input_cfg"])
    elif cfg.get("cuts_path"):
        leaves = [({"type": "lhotse", "cuts_path": cfg["cuts_path"]}, 1.0, {})]
    elif cfg.get("shar_path"):
        leaves = [({"type": "lhotse_shar", "shar_path": cfg["shar_path"]}, 1.0, {})]
    elif cfg.get("manifest_filepath"):
        if cfg.get("is_tarred"):
            leaves = [({"type": "nemo_tarred", "manifest_filepath": cfg["manifest_filepath"],
                        "tarred_audio_filepaths": cfg["tarred_audio_filepaths"]}, 1.0, {})]
        else:
            pairs = parse_weighted_manifests(cfg["manifest_filepath"])
            total = sum(w for _, w in pairs)
            leaves = [({"type": "nemo", "manifest_filepath": p}, w / total, {}) for p, w in pairs]
    else:
        raise ValueError("use_lhotse needs one of input_cfg, cuts_path, shar_path, manifest_filepath")
    cutsets, streaming = [], False
    for node, _, tags in leaves:
        cuts, is_stream = _leaf_cutset(node, cfg, tags, shard_seed)
        streaming |= is_stream
        cutsets.append(cuts.repeat() if infinite else cuts)
    weights = [p for _, p, _ in leaves]
    if len(cutsets) == 1:
        cuts = cutsets[0]
    else:
        cuts = CutSet.mux(*cutsets, weights=weights, seed=shard_seed)
    low, high = cfg.get("min_duration"), cfg.get("max_duration")
    if low is not None or high is not None:
        cuts = cuts.filter(partial(_duration_ok, low=low, high=high))
    return cuts, streaming


def _duration_ok(cut: Any, low: float | None, high: float | None) -> bool:
    return (low is None or cut.duration >= low) and (high is None or cut.duration <= high)


# ----------------------------------------------------------------------------- batches


class LhotseAudioTextDataset(torch.utils.data.Dataset):
    """Turn a CutSet batch into myna's batch dict (see :func:`myna.data.loader.collate_audio_text`).

    NeMo-sourced cuts are read with myna's readers, other cuts with Lhotse; both are mixed down
    to mono and resampled to ``sample_rate`` with soxr. A cut whose audio cannot be read is logged (with
    shard and member for tarred data), counted in :attr:`skipped` and left out of the batch.

    Returns (``__getitem__``):
        dict with audio (B, Lmax) float32, audio_lengths (B,) int64, tokens (B, Umax) int64,
        token_lengths (B,) int64, indices (B,) int64 (row numbers), and ``tags`` (list of B dicts)
        when any cut has tags.
    """

    def __init__(self, tokenizer: Any, sample_rate: int):
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.skipped = 0

    def _audio(self, cut: Any) -> torch.Tensor:
        custom = cut.custom or {}
        if custom.get("myna_nemo"):
            source = cut.recording.sources[0]
            if source.type == "memory":
                return decode_audio_bytes(source.source, self.sample_rate, cut.start, cut.duration,
                                          name=f"{custom.get('shard', '?')} member {cut.recording.id}")
            return load_audio(source.source, self.sample_rate, offset=cut.start, duration=cut.duration)
        audio = np.asarray(cut.load_audio(), dtype=np.float32).mean(axis=0)  # (channels, L) -> (L,)
        if cut.sampling_rate != self.sample_rate:
            audio = soxr.resample(audio, cut.sampling_rate, self.sample_rate, quality="HQ")
        return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))

    def __getitem__(self, cuts: Any) -> dict:
        items, tags = [], []
        for cut in cuts:
            try:
                audio = self._audio(cut)
            except (AudioError, OSError, ValueError, RuntimeError) as err:
                self.skipped += 1
                logger.warning("skipped cut %s: %s (%d skipped so far in this process)", cut.id, err, self.skipped)
                continue
            text = " ".join(s.text for s in cut.supervisions if s.text)
            ids = self.tokenizer.encode(text) if self.tokenizer is not None else []
            items.append({"audio": audio, "tokens": torch.tensor(ids, dtype=torch.int64), "index": len(items)})
            tags.append(dict((cut.custom or {}).get("tags", {})))
        if not items:
            return {}
        batch = collate_audio_text(items)
        if any(tags):
            batch["tags"] = tags
        return batch


class _SkipEmpty:
    """Iterate a DataLoader, dropping batches whose every cut failed to load."""

    def __init__(self, loader: torch.utils.data.DataLoader):
        self.loader = loader
        self.dataset = loader.dataset

    def __iter__(self) -> Iterator[dict]:
        return (batch for batch in self.loader if batch)

    def __len__(self) -> int:
        return len(self.loader)


def _resolve_int_seed(seed: Any, fallback: int) -> int:
    if seed is None:
        return fallback
    if seed == "trng":
        return secrets.randbelow(2**31)
    if seed == "randomized":
        return fallback
    return int(seed)


def build_lhotse_dataloader(cfg: Mapping[str, Any], tokenizer: Any, train: bool, seed: int = 0,
                            world_size: int = 1, rank: int = 0) -> Any:
    """A loader of myna batch dicts from a NeMo-style ``use_lhotse`` dataset config.

    Batches hold at most ``batch_duration`` seconds (with ``quadratic_duration`` each cut counts
    ``d + d**2 / quadratic_duration``) and at most ``batch_size`` cuts. With ``use_bucketing`` cuts
    are drawn from ``num_buckets`` duration buckets (``bucket_duration_bins``, or estimated from
    the first ``num_cuts_for_bins_estimate`` cuts), the buffer holding ``bucket_buffer_size +
    shuffle_buffer_size`` cuts (larger: better buckets and shuffling, more memory).

    Seeds: ``seed`` (default: the run's) seeds each rank's and worker's RNG and, for non-streaming
    sources, the sampler's shuffle, which must agree across ranks. ``shard_seed`` orders shards
    and mixes sources where the iteration runs: "trng" draws a fresh seed per process (default),
    "randomized" derives one from ``seed``, rank and worker (reproducible), an int is the same
    everywhere (every rank would read the same shard order).

    Streaming sources (tar, Shar) run the sampler inside each DataLoader worker (each rank and
    worker reads its own shard order); others sample in the main process and split batches over
    ranks.
    """
    base_seed = _resolve_int_seed(cfg.get("seed"), seed)
    cfg = dict(cfg)
    if cfg.get("shard_seed") == "randomized" and not int(cfg.get("num_workers", 0) or 0):
        # lhotse resolves "randomized" from a worker's seed; in the main process use ours.
        cfg["shard_seed"] = base_seed + rank
    infinite = train and not cfg.get("force_finite", False)
    cuts, streaming = read_cutset_from_config(cfg, infinite=infinite)
    batch_duration, batch_size = cfg.get("batch_duration"), cfg.get("batch_size")
    if batch_duration is None and batch_size is None:
        raise ValueError("use_lhotse needs batch_duration and/or batch_size")
    shuffle = bool(cfg.get("shuffle", train)) and train
    sampler_seed = cfg["shard_seed"] if streaming else base_seed
    common = dict(max_duration=batch_duration, max_cuts=batch_size, shuffle=shuffle,
                  drop_last=bool(cfg.get("drop_last", False)), quadratic_duration=cfg.get("quadratic_duration"),
                  world_size=1 if streaming else world_size, rank=0 if streaming else rank, seed=sampler_seed)
    shuffle_buffer = int(cfg.get("shuffle_buffer_size") or 10000)
    if cfg.get("use_bucketing", False):
        bins = cfg.get("bucket_duration_bins")
        sampler = DynamicBucketingSampler(
            cuts, num_buckets=int(cfg.get("num_buckets", 30)),
            duration_bins=list(bins) if bins is not None else None,
            num_cuts_for_bins_estimate=int(cfg.get("num_cuts_for_bins_estimate", 10000)),
            buffer_size=int(cfg.get("bucket_buffer_size", 10000)) + shuffle_buffer, **common)
    else:
        sampler = DynamicCutSampler(cuts, shuffle_buffer_size=shuffle_buffer, **common)
    dataset = LhotseAudioTextDataset(tokenizer, int(cfg.get("sample_rate", 16000)))
    num_workers = int(cfg.get("num_workers", 0) or 0)
    worker_init = make_worker_init_fn(rank=rank, world_size=world_size, seed=base_seed) if num_workers else None
    if streaming:
        loader = torch.utils.data.DataLoader(IterableDatasetWrapper(dataset, sampler), batch_size=None,
                                             num_workers=num_workers, worker_init_fn=worker_init,
                                             persistent_workers=False, pin_memory=bool(cfg.get("pin_memory", False)))
    else:
        loader = torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                                             worker_init_fn=worker_init,
                                             pin_memory=bool(cfg.get("pin_memory", False)))
    return _SkipEmpty(loader)


# ----------------------------------------------------------------------------- bins


def estimate_duration_bins(manifests: Any, num_buckets: int, num_examples: int | None = None,
                           min_duration: float | None = None, max_duration: float | None = None,
                           seed: int = 0, method: str = "duration") -> list[float]:
    """Bucket boundaries (seconds, ascending, ``num_buckets - 1`` at most) for ``bucket_duration_bins``.

    ``method="duration"`` (NeMo's): equal total duration per bucket, by Lhotse's
    ``estimate_duration_buckets``. ``method="padding"``: the boundaries that minimise padding
    (:func:`myna.data.sampling.min_padding_duration_bins`); on LibriSpeech-like durations with 30
    buckets it pads 1.8% instead of 3.4% (benchmarks/batching.py).

    Args:
        manifests: NeMo manifest(s): a path, a list, or weighted ``[[a.json, 0.7], [b.json, 0.3]]``
            (sources drawn in proportion to the weights).
        num_buckets: buckets wanted.
        num_examples: use only this many utterances (None: all; with weights, until every source
            is exhausted).
        min_duration, max_duration: ignore utterances outside.
        seed: for the weighted draw.
        method: "duration" or "padding".
    """
    if method not in ("duration", "padding"):
        raise ValueError(f"method must be 'duration' or 'padding', got {method!r}")
    if num_buckets < 2:
        raise ValueError(f"num_buckets must be >= 2, got {num_buckets}")
    pairs = parse_weighted_manifests(manifests)
    sources = [CutSet(LazyNeMoIterator(p)) for p, _ in pairs]
    cuts = sources[0] if len(sources) == 1 else CutSet.mux(*sources, weights=[w for _, w in pairs], seed=seed)
    cuts = cuts.filter(partial(_duration_ok, low=min_duration, high=max_duration))
    stream = islice(cuts, num_examples) if num_examples else iter(cuts)
    if method == "padding":
        return min_padding_duration_bins([cut.duration for cut in stream], num_buckets)
    bins = estimate_duration_buckets(stream, num_buckets=num_buckets)
    return [round(float(b), 3) for b in bins]
