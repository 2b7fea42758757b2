"""Dynamic batching with Lhotse (NeMo's ``use_lhotse: true``): NeMo data as lazy Lhotse cuts.

NeMo manifests and NeMo tarred datasets become lazy :class:`lhotse.CutSet` sources
(:class:`LazyNeMoIterator`, :class:`LazyNeMoTarredIterator`: nothing is read before iteration);
Lhotse ``cuts_path`` and ``shar_path`` are read by Lhotse itself. ``input_cfg`` mixes sources
with weights (a group's weight multiplies through to its members) and attaches each source's
``tags`` to every example (:func:`flatten_input_cfg` -> :class:`LhotseSource` leaves). Batches
are built by Lhotse's ``DynamicBucketingSampler`` (or ``DynamicCutSampler`` without bucketing)
under a total-duration budget (:func:`make_sampler`), turned into myna's batch dicts by
:class:`LhotseAudioTextDataset`, and served by :class:`LhotseLoader`, which owns the position
(epoch, batches served) for exact resumption.

Training iterates forever (each source repeats), as NeMo does; an epoch is then
``trainer.limit_train_batches`` steps (set it, and ``trainer.max_steps``), and each epoch
reshuffles. ``force_finite: true`` gives one pass instead. The dataset keys and their meaning
are :class:`myna.data.spec.DatasetSpec`'s.

>>> loader = build_loader({"use_lhotse": True, "manifest_filepath": "train.json", "batch_duration": 300,
...     "use_bucketing": True, "num_buckets": 30, "shuffle": True}, tokenizer, train=True, seed=1, name="train_ds")
"""

from __future__ import annotations

import logging
import os
import random
import secrets
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import yaml
from lhotse import CutSet, MonoCut, SupervisionSegment
from lhotse.audio import AudioSource, Recording
from lhotse.dataset import DynamicBucketingSampler, DynamicCutSampler
from lhotse.dataset.dataloading import resolve_seed, worker_init_fn
from lhotse.dataset.sampling.dynamic_bucketing import estimate_duration_buckets
from torch.utils.data import DataLoader, Sampler

from myna.audio import AudioError, load_audio, to_mono_at_rate
from myna.data.loader import collate_audio_text
from myna.data.manifest import ManifestEntry, ManifestError, count_manifest_lines, iter_manifest
from myna.data.paths import expand_sharded_filepaths, weighted_manifest_paths
from myna.data.resumable import Position, ResumableLoader, WorkerStream, stream_worker_pass
from myna.data.sampling import min_padding_duration_bins
from myna.data.spec import DatasetSpec
from myna.data.stores import is_url
from myna.data.tarred import SkippedMembers, TarMemberIndex, shard_index, stream_tar_members

__all__ = [
    "LazyNeMoIterator",
    "LazyNeMoTarredIterator",
    "LhotseSource",
    "LhotseAudioTextDataset",
    "LhotseLoader",
    "flatten_input_cfg",
    "sources_of",
    "read_cutset",
    "read_cutset_from_config",
    "make_sampler",
    "resolve_int_seed",
    "estimate_duration_bins",
    "CutSet",
]

logger = logging.getLogger("myna.data")

SOURCE_TYPES = ("nemo", "nemo_tarred", "lhotse", "lhotse_shar", "txt", "txt_pair", "txt_jsonl", "group")
TEXT_SOURCE_TYPES = ("txt", "txt_pair", "txt_jsonl")


# ----------------------------------------------------------------------------- sources


class LazyNeMoIterator:
    """A NeMo manifest read lazily, line by line, as Lhotse cuts (no audio or header is read).

    Each cut covers ``[offset, offset + duration)`` of its file, has one supervision with the
    text (and ``language`` from ``lang_field``), and carries ``tags`` in ``cut.custom``. Lines
    are parsed by :func:`myna.data.manifest.iter_manifest`: a bad one names file:line.

    Args:
        path: NeMo manifest (relative audio paths resolve against its folder).
        text_field, lang_field: manifest keys of the transcript and the language.
        sample_rate: rate recorded in the cut (audio is resampled to it when loaded).
        tags: attached to every cut.
    """

    def __init__(self, path: str | os.PathLike, text_field: str = "text", lang_field: str = "lang",
                 sample_rate: int = 16000, tags: Mapping[str, Any] | None = None):
        self.path = os.fspath(path)
        self.text_field = text_field
        self.lang_field = lang_field
        self.sample_rate = sample_rate
        self.tags = dict(tags or {})
        if not is_url(self.path) and not os.path.isfile(self.path):  # fail here, not at the first batch
            raise ManifestError(f"manifest not found: {self.path}")

    def __iter__(self) -> Iterator[MonoCut]:
        stem = Path(self.path.rsplit("/", 1)[-1]).stem
        for entry in iter_manifest(self.path, self.text_field):
            yield _make_cut(entry, f"{stem}-{entry.line}", entry.audio_filepath, entry.audio_filepath,
                            lang_field=self.lang_field, sample_rate=self.sample_rate, tags=self.tags)

    def __len__(self) -> int:
        return count_manifest_lines(self.path)


class LazyNeMoTarredIterator:
    """NeMo tar shards read lazily as Lhotse cuts holding the member bytes in memory.

    ``manifest_filepath`` is either one tarred manifest (read once) or a brace pattern / list of
    sharded manifests matching the shards one to one (each read when its shard is); members find
    their entries through a :class:`myna.data.tarred.TarMemberIndex`. Shards are visited in
    order, or shuffled with ``shard_seed`` (resolved where the iteration runs: "trng" differs on
    every process, "randomized" derives from the worker's and rank's seed). A corrupt shard is
    logged with the shard and member and skipped.

    Args:
        manifest_filepath: tarred manifest(s), see above.
        tarred_audio_filepaths: shard list or brace pattern (NeMo's forms).
        shuffle_shards: shuffle the shard order on each pass.
        shard_seed: int | "trng" | "randomized".
        text_field, lang_field, sample_rate, tags: as :class:`LazyNeMoIterator`.
        shard_strategy, world_size, rank: ``scatter`` reads only this rank's shards (every
            ``world_size``-th, from ``rank``), so ranks share a pass over the data out; ``replicate``
            (NeMo's Lhotse behaviour) reads every shard on every rank, each in its own order.
    """

    def __init__(self, manifest_filepath: Any, tarred_audio_filepaths: Any, *, shuffle_shards: bool = False,
                 shard_seed: int | str = "trng", text_field: str = "text", lang_field: str = "lang",
                 sample_rate: int = 16000, tags: Mapping[str, Any] | None = None, shard_strategy: str = "replicate",
                 world_size: int = 1, rank: int = 0):
        shards = expand_sharded_filepaths(tarred_audio_filepaths, "replicate")
        manifests = expand_sharded_filepaths(manifest_filepath, "replicate")
        if len(manifests) not in (1, len(shards)):
            raise ValueError(f"{len(manifests)} manifests for {len(shards)} shards: give one tarred "
                             f"manifest or one sharded manifest per shard ({manifest_filepath!r})")
        if shard_strategy == "scatter" and world_size > 1:
            if len(shards) < world_size:
                raise ValueError(f"{len(shards)} shards cannot be scattered over {world_size} ranks "
                                 f"(tarred_shard_strategy: scatter); use replicate or write more shards")
            shards = shards[rank::world_size]
            manifests = manifests if len(manifests) == 1 else manifests[rank::world_size]
        self.shards = shards
        self.manifests = manifests
        self.shuffle_shards = shuffle_shards
        self.shard_seed = shard_seed
        self.text_field = text_field
        self.lang_field = lang_field
        self.sample_rate = sample_rate
        self.tags = dict(tags or {})
        self._skip = SkippedMembers()
        self.unread = 0  # manifest entries never found in their shards, counted at the end of each shard

    @property
    def skipped(self) -> int:
        """Members skipped in this process (corrupt, refused, not in the manifest)."""
        return self._skip.count

    def __iter__(self) -> Iterator[MonoCut]:
        order = list(range(len(self.shards)))
        if self.shuffle_shards:
            random.Random(resolve_seed(self.shard_seed)).shuffle(order)
        shared = TarMemberIndex.read(self.manifests[0], self.text_field) if len(self.manifests) == 1 else None
        for i in order:
            shard = self.shards[i]
            index = shared if shared is not None else TarMemberIndex.read(self.manifests[i], self.text_field)
            seen: set[int] = set()
            for member, data in stream_tar_members(shard, self._skip):
                numbers = index[member]
                if not numbers:
                    self._skip(shard, member, "not in the manifest")
                seen.update(numbers)
                for number in numbers:
                    entry = index.entries[number]
                    cut = _make_cut(entry, f"{Path(shard).stem}-{member}-{entry.line}", member, data,
                                    lang_field=self.lang_field, sample_rate=self.sample_rate, tags=self.tags)
                    cut.custom["shard"] = shard
                    yield cut
            # The shard's manifest entries that it never yielded (missing, cut short, past a corrupt point).
            expected = (range(len(index.entries)) if shared is None else
                        [n for n, e in enumerate(index.entries) if str(e.extra.get("shard_id")) == str(shard_index(shard))])
            unread = [n for n in expected if n not in seen]
            if unread:
                self.unread += len(unread)
                logger.warning("shard %s: %d of its %d manifest entries were never read (member missing, cut short or "
                               "past a corrupt point), e.g. %s; %d lost so far in this process", shard, len(unread),
                               len(expected), index.entries[unread[0]].audio_filepath, self.unread)

    def __len__(self) -> int:
        return sum(count_manifest_lines(m) for m in self.manifests)  # one tarred manifest: all ranks' entries


def _make_cut(entry: ManifestEntry, cut_id: str, recording_id: str, source: str | bytes, *, lang_field: str,
              sample_rate: int, tags: Mapping[str, Any]) -> MonoCut:
    """The cut of a manifest entry whose audio is the file ``source`` or, as bytes, in memory."""
    end = entry.offset + entry.duration
    kind = "memory" if isinstance(source, bytes) else "file"
    recording = Recording(id=recording_id, sources=[AudioSource(type=kind, channels=[0], source=source)],
                          sampling_rate=sample_rate, num_samples=max(1, round(end * sample_rate)), duration=end)
    supervision = SupervisionSegment(id=cut_id, recording_id=recording_id, start=entry.offset,
                                     duration=entry.duration, text=entry.text,
                                     language=entry.extra.get(lang_field))
    custom = {"myna_nemo": True}
    if tags:
        custom.update(tags)
        custom["tags"] = dict(tags)
    return MonoCut(id=cut_id, start=entry.offset, duration=entry.duration, channel=0, supervisions=[supervision],
                   recording=recording, custom=custom)


def _attach_tags(cut: Any, tags: Mapping[str, Any]) -> Any:
    cut.custom = dict(cut.custom or {})
    cut.custom.update(tags)
    cut.custom["tags"] = {**cut.custom.get("tags", {}), **tags}
    return cut


# ----------------------------------------------------------------------------- source specs


@dataclass(frozen=True)
class LhotseSource:
    """One leaf of the source tree: what to read, its probability in the mix, its tags.

    Attributes:
        type: nemo | nemo_tarred | lhotse | lhotse_shar.
        weight: probability of drawing from this source (a flattened ``input_cfg`` sums to 1).
        tags: attached to every example of the source.
        manifest_filepath: nemo / nemo_tarred: manifest path(s) (weighted lists allowed for nemo).
        tarred_audio_filepaths: nemo_tarred: the shards.
        cuts_path: lhotse: a CutSet manifest.
        shar_path: lhotse_shar: a Shar folder or a dict of field -> shard lists.
        text_field, lang_field: manifest keys (None: the dataset section's).
        paths: txt / txt_jsonl: text files (one text per line / NeMo text-only records).
        source_paths, target_paths: txt_pair: spoken texts and their transcripts, line by line.
        language: txt: the texts' language tag.
        min_words, max_words: text sources: word-count filter (None: no bound).
    """

    type: str
    weight: float = 1.0
    tags: Mapping[str, Any] = field(default_factory=dict)
    manifest_filepath: Any = None
    tarred_audio_filepaths: Any = None
    cuts_path: Any = None
    shar_path: Any = None
    text_field: str | None = None
    lang_field: str | None = None
    paths: Any = None
    source_paths: Any = None
    target_paths: Any = None
    language: str | None = None
    min_words: int | None = None
    max_words: int | None = None


_SOURCE_KEYS = {"nemo": ("manifest_filepath",), "nemo_tarred": ("manifest_filepath", "tarred_audio_filepaths"),
                "lhotse": ("cuts_path",), "lhotse_shar": ("shar_path",), "txt": ("paths",),
                "txt_pair": ("source_paths", "target_paths"), "txt_jsonl": ("paths",)}
_LEAF_KEYS = ("manifest_filepath", "tarred_audio_filepaths", "cuts_path", "shar_path", "text_field", "lang_field",
              "paths", "source_paths", "target_paths", "language", "min_words", "max_words")
# accepted from NeMo's text source configs; the language tags of txt_pair are not used here
_IGNORED_NODE_KEYS = {"source_language", "target_language", "questions_path", "questions_language", "shuffle",
                      "shard_seed"}
_NODE_KEYS = {"type", "weight", "tags", "input_cfg", *_LEAF_KEYS, *_IGNORED_NODE_KEYS}


def flatten_input_cfg(input_cfg: Any, weight: float = 1.0,
                      tags: Mapping[str, Any] | None = None) -> list[LhotseSource]:
    """Leaves of an ``input_cfg`` tree, each with its probability and accumulated tags.

    A node's probability is its ``weight`` divided by the sum of its siblings' weights, times its
    parent's probability (nested muxing, flattened), so a group's weight multiplies through to its
    members. Tags accumulate from the outside in (inner values win).

    Args:
        input_cfg: list of source dicts (``type``: nemo | nemo_tarred | lhotse | lhotse_shar |
            group; ``weight``; ``tags``; a group's own ``input_cfg``), or a YAML file path.

    Raises:
        ValueError: a node without a known type or without the keys its type needs, an unknown
            key, a negative weight, or weights that sum to 0.
    """
    if type(input_cfg).__name__ in ("ListConfig", "DictConfig"):
        from omegaconf import OmegaConf

        input_cfg = OmegaConf.to_container(input_cfg, resolve=True)
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
        unknown = sorted(set(node) - _NODE_KEYS)
        if unknown:
            raise ValueError(f"input_cfg entry has unknown key(s) {unknown}: {node!r}")
        missing = [k for k in _SOURCE_KEYS.get(node["type"], ("input_cfg",)) if not node.get(k)]
        if missing:
            raise ValueError(f"input_cfg entry of type {node['type']} needs {missing}: {node!r}")
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
            leaves.append(LhotseSource(type=node["type"], weight=p, tags=node_tags,
                                       **{k: node.get(k) for k in _LEAF_KEYS}))
    return leaves


def sources_of(spec: DatasetSpec) -> list[LhotseSource]:
    """The sources a dataset section names, first match wins: ``input_cfg``; ``cuts_path``;
    ``shar_path``; ``manifest_filepath`` (+ ``tarred_audio_filepaths`` when ``is_tarred``;
    weighted lists become weighted sources)."""
    if spec.input_cfg:
        return flatten_input_cfg(spec.input_cfg)
    if spec.cuts_path:
        return [LhotseSource("lhotse", cuts_path=spec.cuts_path)]
    if spec.shar_path:
        return [LhotseSource("lhotse_shar", shar_path=spec.shar_path)]
    if spec.manifest_filepath:
        if spec.is_tarred:
            return [LhotseSource("nemo_tarred", manifest_filepath=spec.manifest_filepath,
                                 tarred_audio_filepaths=spec.tarred_audio_filepaths)]
        pairs = weighted_manifest_paths(spec.manifest_filepath)
        total = sum(w for _, w in pairs)
        return [LhotseSource("nemo", weight=w / total, manifest_filepath=p) for p, w in pairs]
    raise ValueError("use_lhotse needs one of input_cfg, cuts_path, shar_path, manifest_filepath")


# ----------------------------------------------------------------------------- cut sets


def read_cutset(sources: Sequence[LhotseSource], *, sample_rate: int, shuffle: bool, shard_seed: Any,
                infinite: bool = False, min_duration: float | None = None, max_duration: float | None = None,
                text_field: str = "text", lang_field: str = "lang", tokenizer: Any = None,
                shard_strategy: str = "replicate", world_size: int = 1, rank: int = 0) -> tuple[CutSet, bool]:
    """The (lazy) CutSet of some sources, and whether it streams shards.

    With ``infinite`` every source repeats before muxing, so the weights hold exactly for as long
    as training runs. Durations outside ``[min_duration, max_duration]`` are filtered.

    Args:
        sources: the leaves (see :func:`sources_of`, :func:`flatten_input_cfg`).
        sample_rate: rate recorded in NeMo-sourced cuts.
        shuffle: shuffle shard orders (tarred and Shar sources).
        shard_seed: int | "trng" | "randomized": shard order and source mixing.
        infinite: repeat every source.
        min_duration, max_duration: seconds (None: no bound).
        text_field, lang_field: manifest keys for sources that name none.
        tokenizer: gives text sources' examples their token ids (their length in tokens).
        shard_strategy, world_size, rank: how tar shards are split over ranks
            (:class:`LazyNeMoTarredIterator`).
    """
    cutsets, streaming = [], False
    for source in sources:
        if source.type in TEXT_SOURCE_TYPES:
            cuts, is_stream = _text_cutset(source, tokenizer, shuffle=shuffle, shard_seed=shard_seed,
                                           text_field=source.text_field or text_field), False
        else:
            cuts, is_stream = _source_cutset(source, sample_rate=sample_rate, shuffle=shuffle, shard_seed=shard_seed,
                                             text_field=source.text_field or text_field,
                                             lang_field=source.lang_field or lang_field,
                                             split=dict(shard_strategy=shard_strategy, world_size=world_size,
                                                        rank=rank))
        streaming |= is_stream
        cutsets.append(cuts.repeat() if infinite else cuts)
    cuts = cutsets[0] if len(cutsets) == 1 else CutSet.mux(*cutsets, weights=[s.weight for s in sources],
                                                            seed=shard_seed)
    if min_duration is not None or max_duration is not None:
        cuts = cuts.filter(partial(_duration_ok, low=min_duration, high=max_duration))
    return cuts, streaming


def read_cutset_from_config(section: Any, infinite: bool = False, name: str = "train_ds") -> tuple[CutSet, bool]:
    """:func:`read_cutset` of a dataset section (parsed by :class:`myna.data.spec.DatasetSpec`)."""
    spec = DatasetSpec.from_section(section, name)
    return read_cutset(sources_of(spec), sample_rate=spec.sample_rate, shuffle=spec.shuffle,
                       shard_seed=spec.shard_seed, infinite=infinite, min_duration=spec.min_duration,
                       max_duration=spec.max_duration, text_field=spec.text_field, lang_field=spec.lang_field)


def _source_cutset(source: LhotseSource, *, sample_rate: int, shuffle: bool, shard_seed: Any, text_field: str,
                   lang_field: str, split: Mapping[str, Any] | None = None) -> tuple[CutSet, bool]:
    tags = dict(source.tags)
    if source.type == "nemo":
        pairs = weighted_manifest_paths(source.manifest_filepath)
        cutsets = [CutSet(LazyNeMoIterator(p, text_field, lang_field, sample_rate, tags)) for p, _ in pairs]
        if len(cutsets) == 1:
            return cutsets[0], False
        return CutSet.mux(*cutsets, weights=[w for _, w in pairs], seed=shard_seed), False
    if source.type == "nemo_tarred":
        return CutSet(LazyNeMoTarredIterator(source.manifest_filepath, source.tarred_audio_filepaths,
                                             shuffle_shards=shuffle, shard_seed=shard_seed, text_field=text_field,
                                             lang_field=lang_field, sample_rate=sample_rate, tags=tags,
                                             **(split or {}))), True
    if source.type == "lhotse":
        path = source.cuts_path
        cuts = CutSet.from_jsonl_lazy(path) if str(path).endswith((".jsonl", ".jsonl.gz")) else CutSet.from_file(path)
    else:  # lhotse_shar
        cuts = CutSet.from_shar(fields=_shar_fields(source.shar_path, split), shuffle_shards=shuffle,
                                seed=shard_seed if shard_seed != "trng" else "randomized")
    if tags:
        cuts = cuts.map(partial(_attach_tags, tags=tags))
    return cuts, source.type == "lhotse_shar"


def _shar_fields(shar: Any, split: Mapping[str, Any] | None) -> dict[str, list]:
    """The shard files of a Shar source per field (``cuts``, ``recording``, ...), this rank's only
    under the ``scatter`` strategy (every ``world_size``-th shard from ``rank``, as for tar shards).

    Args:
        shar: a Shar directory (Lhotse finds its fields) or a mapping field -> shard paths.
        split: ``shard_strategy``, ``world_size``, ``rank``; None reads every shard.

    Raises:
        ValueError: fewer shards than ranks under ``scatter``.
    """
    from lhotse.shar.readers.lazy import LazySharIterator

    if isinstance(shar, (str, os.PathLike)):
        fields = {field: list(paths) for field, paths in LazySharIterator(in_dir=shar).streams.items()}
    else:
        fields = {field: list(paths) for field, paths in dict(shar).items()}
    world_size, rank = (split or {}).get("world_size", 1), (split or {}).get("rank", 0)
    if (split or {}).get("shard_strategy") == "scatter" and world_size > 1:
        shards = len(fields.get("cuts", []))
        if shards < world_size:
            raise ValueError(f"shar_path {shar}: {shards} Shar shards cannot be scattered over {world_size} ranks "
                             f"(write more shards, or set tarred_shard_strategy: replicate)")
        fields = {field: paths[rank::world_size] for field, paths in fields.items()}
    return fields


def _text_cutset(source: LhotseSource, tokenizer: Any, *, shuffle: bool, shard_seed: Any,
                 text_field: str) -> CutSet:
    """A text source (txt, txt_pair, txt_jsonl) as lazy Lhotse text examples with token ids."""
    from myna.data.text_only import LhotseTextSource, filter_by_words, read_text_lines, read_text_pairs, \
        read_text_records

    if source.type == "txt":
        records = read_text_lines(source.paths, language=source.language)
    elif source.type == "txt_pair":
        records = read_text_pairs(source.source_paths, source.target_paths)
    else:
        records = read_text_records(source.paths, text_field=text_field)
    if source.min_words is not None or source.max_words is not None:
        records, _ = filter_by_words(records, source.min_words, source.max_words, name=f"{source.type} source")
    seed = shard_seed if isinstance(shard_seed, int) and not isinstance(shard_seed, bool) else 0
    return CutSet(LhotseTextSource(records, tokenizer, tags=source.tags, shuffle=shuffle, seed=seed))


def _duration_ok(cut: Any, low: float | None, high: float | None) -> bool:
    if not hasattr(cut, "duration"):  # a text example: its speech does not exist yet
        return True
    return (low is None or cut.duration >= low) and (high is None or cut.duration <= high)


# ----------------------------------------------------------------------------- batches


class LhotseAudioTextDataset(torch.utils.data.Dataset):
    """Turn a CutSet batch into myna's batch dict (see :func:`myna.data.loader.collate_audio_text`).

    NeMo-sourced cuts are decoded by :func:`myna.audio.load_audio` (file or tar member bytes);
    other cuts by Lhotse, then mixed down and resampled by :func:`myna.audio.to_mono_at_rate`. A
    cut whose audio cannot be read is logged (with shard and member for tarred data), counted in
    :attr:`skipped` and left out of the batch.

    Returns (``__getitem__``):
        dict with audio (B, Lmax) float32, audio_lengths (B,) int64, tokens (B, Umax) int64,
        token_lengths (B,) int64, indices (B,) int64 (row numbers), ids (list of B cut ids), and
        ``tags`` (list of B dicts) when any cut has tags; {} when no cut could be read.
    """

    def __init__(self, tokenizer: Any, sample_rate: int, synthesizer: Any = None):
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.synthesizer = synthesizer  # speaks text examples (myna.data.tts.Synthesizer)
        self.skipped = 0

    def _audio(self, cut: Any) -> torch.Tensor:
        custom = cut.custom or {}
        if custom.get("myna_nemo"):
            source = cut.recording.sources[0]
            name = f"shard {custom.get('shard', '?')} member {cut.recording.id}" if source.type == "memory" else None
            return load_audio(source.source, self.sample_rate, offset=cut.start, duration=cut.duration, name=name)
        samples = np.asarray(cut.load_audio(), dtype=np.float32)  # (channels, L)
        return to_mono_at_rate(samples.T, cut.sampling_rate, self.sample_rate)

    def _text_item(self, example: Any) -> dict:
        """A text example spoken by the synthesizer (hybrid ASR-TTS)."""
        if self.synthesizer is None:
            raise ValueError("a text example needs a TTS backend (model.<ds>.tts)")
        custom = example.custom or {}
        target = getattr(example, "target", example)
        ids = target.tokens if target.tokens is not None else (
            self.tokenizer.encode(target.text) if self.tokenizer is not None else [])
        audio = self.synthesizer(custom.get("tts_text", target.text), key=custom.get("key"))
        return {"audio": audio, "tokens": torch.as_tensor(np.asarray(ids), dtype=torch.int64),
                "id": custom.get("key", target.text), "synthetic": True}

    def __getitem__(self, cuts: Any) -> dict:
        items, tags = [], []
        for cut in cuts:
            name = getattr(cut, "id", None) or (cut.custom or {}).get("key", "?")
            try:
                if not hasattr(cut, "recording"):  # TextExample / TextPairExample
                    item = self._text_item(cut)
                else:
                    text = " ".join(s.text for s in cut.supervisions if s.text)
                    ids = self.tokenizer.encode(text) if self.tokenizer is not None else []
                    item = {"audio": self._audio(cut), "tokens": torch.tensor(ids, dtype=torch.int64), "id": cut.id,
                            "synthetic": False}
            except (AudioError, OSError, ValueError, RuntimeError) as err:
                self.skipped += 1
                logger.warning("skipped cut %s: %s (%d skipped so far in this process)", name, err, self.skipped)
                continue
            item["index"] = len(items)
            items.append(item)
            tags.append(dict((cut.custom or {}).get("tags", {})))
        if not items:
            return {}
        batch = collate_audio_text(items)
        if any(item["synthetic"] for item in items):
            batch["synthetic"] = torch.tensor([item["synthetic"] for item in items], dtype=torch.bool)
        if any(tags):
            batch["tags"] = tags
        return batch


def make_sampler(cuts: CutSet, *, batch_duration: float | None, batch_size: int | None, shuffle: bool,
                 drop_last: bool, quadratic_duration: float | None, use_bucketing: bool, num_buckets: int,
                 bucket_duration_bins: Sequence[float] | None, num_cuts_for_bins_estimate: int,
                 bucket_buffer_size: int, shuffle_buffer_size: int, seed: Any, world_size: int,
                 rank: int, constraint: Any = None) -> Any:
    """Lhotse's dynamic sampler for ``cuts``: batches of at most ``batch_duration`` seconds (each
    cut counting ``d + d**2 / quadratic_duration`` with ``quadratic_duration``) and at most
    ``batch_size`` cuts; with ``use_bucketing`` drawn from ``num_buckets`` duration buckets
    (``bucket_duration_bins``, or estimated from the first ``num_cuts_for_bins_estimate`` cuts),
    the buffer holding ``bucket_buffer_size + shuffle_buffer_size`` cuts (larger: better buckets
    and shuffling, more memory). A ``constraint`` (e.g. :class:`myna.data.text_only.MultimodalConstraint`:
    audio and text in tokens) replaces the duration and count limits; bins are then in its units."""
    if constraint is not None:
        common = dict(constraint=constraint, shuffle=shuffle, drop_last=drop_last, world_size=world_size, rank=rank,
                      seed=seed)
    elif batch_duration is None and batch_size is None:
        raise ValueError("use_lhotse needs batch_duration and/or batch_size")
    else:
        common = dict(max_duration=batch_duration, max_cuts=batch_size, shuffle=shuffle, drop_last=drop_last,
                      quadratic_duration=quadratic_duration, world_size=world_size, rank=rank, seed=seed)
    if use_bucketing:
        return DynamicBucketingSampler(
            cuts, num_buckets=num_buckets,
            duration_bins=list(bucket_duration_bins) if bucket_duration_bins is not None else None,
            num_cuts_for_bins_estimate=num_cuts_for_bins_estimate,
            buffer_size=bucket_buffer_size + shuffle_buffer_size, **common)
    return DynamicCutSampler(cuts, shuffle_buffer_size=shuffle_buffer_size, **common)


class LhotseLoader(ResumableLoader):
    """Batches of a Lhotse sampler, epoch by epoch, resumable anywhere inside an epoch.

    Non-streaming sources are sampled here, in the training process; a DataLoader's workers only
    decode. A restored position re-runs the sampler over the cuts it had already batched (cut
    metadata, no audio) before serving. Streaming sources (tar shards, Shar) are sampled inside
    each worker (each reads its own shard order); a restored position makes each worker pass over
    the batches it had served (see :class:`myna.data.resumable.WorkerStream`).

    Exact resumption needs reproducible seeds: ``shard_seed`` "trng" (the default) draws a new
    shard order and source mix in every process, so the batches after a restart differ from those
    an uninterrupted run would have seen (a warning says so when a position is restored).

    Each epoch sets the sampler's epoch, so every epoch is shuffled anew. An endless (training)
    loader has no length; its epochs end where the trainer ends them.

    Args:
        sampler: a Lhotse ``CutSampler``.
        dataset: cuts -> batch dict (:class:`LhotseAudioTextDataset`).
        streaming: sample inside the workers (tar or Shar sources).
        num_workers: DataLoader processes.
        pin_memory: pin batches.
        worker_init_fn: run in each worker with its (logical) id, e.g. Lhotse's seeding.
        reproducible: whether the seeds make the cut order reproducible (False: "trng").
    """

    def __init__(self, sampler: Any, dataset: LhotseAudioTextDataset, *, streaming: bool, num_workers: int = 0,
                 pin_memory: bool = False, worker_init_fn: Callable[[int], None] | None = None,
                 reproducible: bool = True):
        self.cut_sampler = sampler  # not "sampler": Lightning would set its epoch behind this loader's back
        self.dataset = dataset
        self.streaming = streaming
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.worker_init_fn = worker_init_fn
        self.reproducible = reproducible
        if streaming:
            self._stream = _SampledStream(sampler, dataset)
        else:
            self._feed = _FromBatch(sampler)
            self._loader = DataLoader(dataset, sampler=self._feed, batch_size=None, num_workers=num_workers,
                                      worker_init_fn=worker_init_fn, pin_memory=pin_memory)
        super().__init__()

    def _start_position(self, epoch: int) -> Position:
        return {"batches": 0, "pass": {}} if self.streaming else {"batches": 0}

    def load_state_dict(self, state: Position) -> None:
        super().load_state_dict(state)
        if not self.reproducible and int(state.get("batches", 0)) > 0:
            logger.warning("resuming a Lhotse loader whose shard_seed or seed is 'trng': the cut order after the "
                           "restart is drawn anew, so the batches differ from an uninterrupted run's")

    def _iterate(self, epoch: int, start: Position) -> Iterator[tuple[Any, Position]]:
        served = int(start["batches"])
        if self.streaming:
            self._stream.epoch = epoch
            for batch, position in stream_worker_pass(self._stream, dict(start.get("pass") or {}), self.num_workers,
                                                      self.pin_memory, worker_init_fn=self.worker_init_fn):
                served += batch is not None
                yield batch, {"batches": served, "pass": position}
            return
        self.cut_sampler.set_epoch(epoch)
        self._feed.skip = served
        for batch in self._loader:
            served += 1
            yield (batch or None), {"batches": served}


class _FromBatch(Sampler):
    """A Lhotse sampler from its ``skip``-th batch on (the ones before are drawn, not served)."""

    def __init__(self, sampler: Any):
        self.sampler = sampler
        self.skip = 0

    def __iter__(self) -> Iterator[Any]:
        return islice(iter(self.sampler), self.skip, None)


class _SampledStream(WorkerStream):
    """A Lhotse sampler run inside each DataLoader worker (streaming sources)."""

    def __init__(self, sampler: Any, dataset: LhotseAudioTextDataset):
        super().__init__()
        self.sampler = sampler
        self.dataset = dataset
        self.epoch = 0

    def worker_batches(self, worker: int, num_workers: int, skip: int) -> Iterator[dict | None]:
        self.sampler.set_epoch(self.epoch)
        for number, cuts in enumerate(self.sampler):
            if number >= skip:
                yield self.dataset[cuts] or None


def resolve_int_seed(seed: Any, fallback: int) -> int:
    """A section's ``seed`` as an int: None and "randomized" -> ``fallback`` (the run's seed);
    "trng" -> a fresh random int."""
    if seed is None or seed == "randomized":
        return fallback
    if seed == "trng":
        return secrets.randbelow(2**31)
    return int(seed)


def lhotse_worker_init(rank: int, world_size: int, seed: int) -> Callable[[int], None]:
    """Lhotse's per-worker seeding (different seeds per worker and rank, reproducible)."""
    return partial(worker_init_fn, rank=rank, world_size=world_size, seed=seed)


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
    pairs = weighted_manifest_paths(manifests)
    sources = [CutSet(LazyNeMoIterator(p)) for p, _ in pairs]
    cuts = sources[0] if len(sources) == 1 else CutSet.mux(*sources, weights=[w for _, w in pairs], seed=seed)
    cuts = cuts.filter(partial(_duration_ok, low=min_duration, high=max_duration))
    stream = islice(cuts, num_examples) if num_examples else iter(cuts)
    if method == "padding":
        return min_padding_duration_bins([cut.duration for cut in stream], num_buckets)
    bins = estimate_duration_buckets(stream, num_buckets=num_buckets)
    return [round(float(b), 3) for b in bins]
