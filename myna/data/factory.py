"""One entry point from a NeMo-style dataset config (``model.train_ds`` ...) to a batch loader.

:func:`build_loader` picks the path NeMo would:

- ``use_lhotse: true`` -> Lhotse dynamic batching (:mod:`myna.data.lhotse_io`);
- ``manifest_filepath`` as a list of lists -> static bucketing, one source per bucket, tarred or
  not (:mod:`myna.data.sampling`);
- ``is_tarred: true`` -> streamed tar shards (:mod:`myna.data.tarred`), a fixed number of batches
  per epoch, equal on every rank;
- otherwise a manifest loader: semi-sorted (``use_semi_sorted_batching``) or random batches split
  over ranks, or :func:`myna.data.loader.build_dataloader` on one process.

Whatever the path, the loader yields dicts with ``audio`` (B, Lmax) float32, ``audio_lengths`` (B,)
int64, ``tokens`` (B, Umax) int64, ``token_lengths`` (B,) int64, ``indices`` (B,) int64, plus
``tags`` (list of B dicts) when the sources carry tags.

>>> loader = build_loader(cfg.model.train_ds, tokenizer, train=True, seed=cfg.seed, name="train_ds")
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Mapping, Sequence

from torch.utils.data import DataLoader

from myna.data.loader import AudioToTextDataset, build_dataloader, collate_audio_text
from myna.data.manifest import filter_entries, read_manifest
from myna.data.resumable import ResumableDataLoader
from myna.data.sampling import (
    BucketChainLoader,
    DistributedBatchSampler,
    FixedLengthLoader,
    bucketing_batch_sizes,
)
from myna.data.tarred import (
    TarredAudioDataset,
    count_manifest_lines,
    expand_sharded_filepaths,
    expected_batches,
    shard_index,
)

__all__ = ["build_loader"]

logger = logging.getLogger("myna.data")

# NeMo keys whose non-default values myna does not implement.
_UNSUPPORTED = (("trim_silence", False), ("use_start_end_token", False))


def build_loader(ds_cfg: Mapping[str, Any], tokenizer: Any, train: bool, seed: int, name: str,
                 world_size: int = 1, rank: int = 0) -> Any:
    """A batch loader for one dataset section (train_ds / validation_ds / test_ds).

    Args:
        ds_cfg: the section (DictConfig or dict), NeMo's keys.
        tokenizer: ``encode(text) -> list[int]`` (None: empty token sequences).
        train: shuffle / drop_last / infinite Lhotse iteration apply only when True.
        seed: the run's seed (a section's own ``seed`` key wins for Lhotse).
        name: section name for messages.
        world_size, rank: DDP layout (each rank builds its own loader).

    Returns:
        an iterable of batch dicts with ``__len__`` (except infinite Lhotse training loaders), or
        None when the section names no data.
    """
    cfg = _plain(ds_cfg)
    for key, default in _UNSUPPORTED:
        if cfg.get(key, default) != default:
            raise ValueError(f"model.{name}.{key}={cfg.get(key)} is not supported yet")
    manifests = cfg.get("manifest_filepath")
    if cfg.get("use_lhotse", False):
        if not any(cfg.get(k) for k in ("manifest_filepath", "input_cfg", "cuts_path", "shar_path")):
            return None
        from myna.data.lhotse_io import build_lhotse_dataloader

        return build_lhotse_dataloader(cfg, tokenizer, train=train, seed=seed, world_size=world_size, rank=rank)
    if not manifests:
        return None
    is_tarred = bool(cfg.get("is_tarred", False))
    tarred = cfg.get("tarred_audio_filepaths")
    if is_tarred and not tarred:
        raise ValueError(f"model.{name}.is_tarred is true but tarred_audio_filepaths is not set")
    if _is_nested(manifests) or (is_tarred and _is_nested(tarred)):
        return _bucketing_loader(cfg, tokenizer, train, seed, name, world_size, rank)
    if is_tarred:
        return _tarred_loader(cfg, manifests, tarred, int(cfg["batch_size"]), tokenizer, train, seed,
                              name, world_size, rank)
    return _manifest_loader(cfg, manifests, int(cfg["batch_size"]), tokenizer, train, seed, name,
                            world_size, rank, resumable=True)


def _plain(ds_cfg: Mapping[str, Any]) -> dict:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(ds_cfg, DictConfig):
            return OmegaConf.to_container(ds_cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return dict(ds_cfg)


def _is_nested(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and any(
        isinstance(v, Sequence) and not isinstance(v, str) for v in value)


def _manifest_loader(cfg: dict, manifests: Any, batch_size: int, tokenizer: Any, train: bool, seed: int,
                     name: str, world_size: int, rank: int, resumable: bool) -> Any:
    entries = read_manifest(manifests, text_field=cfg.get("text_field", "text"))
    entries, report = filter_entries(entries, min_duration=cfg.get("min_duration"),
                                     max_duration=cfg.get("max_duration"), name=f"model.{name}")
    if not entries:
        raise ValueError(f"model.{name}: no utterances left after filtering {manifests} ({report})")
    shuffle = bool(cfg.get("shuffle", False)) and train
    drop_last = bool(cfg.get("drop_last", False)) and train
    semi = bool(cfg.get("use_semi_sorted_batching", False)) and train
    num_workers = int(cfg.get("num_workers", 0) or 0)
    if not semi and world_size == 1 and resumable:
        return build_dataloader(entries, tokenizer, sample_rate=int(cfg["sample_rate"]), batch_size=batch_size,
                                shuffle=shuffle, num_workers=num_workers, seed=seed, drop_last=drop_last,
                                pin_memory=bool(cfg.get("pin_memory", False)))
    dataset = AudioToTextDataset(entries, tokenizer, int(cfg["sample_rate"]))
    factor = cfg.get("randomization_factor", 0.1) if semi else None
    sampler = DistributedBatchSampler(dataset.durations, batch_size, world_size=world_size, rank=rank,
                                      shuffle=shuffle or semi, seed=seed, drop_last=drop_last,
                                      randomization_factor=factor)
    cls = ResumableDataLoader if resumable else DataLoader
    return cls(dataset, batch_sampler=sampler, collate_fn=collate_audio_text, num_workers=num_workers,
               pin_memory=bool(cfg.get("pin_memory", False)), persistent_workers=resumable and num_workers > 0)


def _tarred_loader(cfg: dict, manifests: Any, tarred: Any, batch_size: int, tokenizer: Any, train: bool,
                   seed: int, name: str, world_size: int, rank: int) -> FixedLengthLoader:
    shuffle = bool(cfg.get("shuffle", False)) and train
    strategy = cfg.get("tarred_shard_strategy", "scatter")
    shard_manifests = bool(cfg.get("shard_manifests", False))
    num_workers = int(cfg.get("num_workers", 0) or 0)
    drop_last = bool(cfg.get("drop_last", False)) and train
    dataset = TarredAudioDataset(
        manifests, tarred, tokenizer, int(cfg["sample_rate"]),
        shuffle_n=int(cfg.get("shuffle_n", 2048) or 0) if shuffle else 0, shuffle=shuffle,
        shard_strategy=strategy, shard_manifests=shard_manifests, world_size=world_size,
        global_rank=rank, min_duration=cfg.get("min_duration"), max_duration=cfg.get("max_duration"),
        text_field=cfg.get("text_field", "text"), seed=seed)
    num_batches = _equal_batch_count(dataset, manifests, tarred, strategy, shard_manifests, world_size,
                                     max(1, num_workers), batch_size, drop_last)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_audio_text, num_workers=num_workers,
                        drop_last=drop_last, pin_memory=bool(cfg.get("pin_memory", False)),
                        persistent_workers=num_workers > 0)
    logger.info("model.%s: rank %d reads %d shards, %d batches per epoch", name, rank, len(dataset.shards),
                num_batches)
    return FixedLengthLoader(loader, num_batches, name=f"model.{name} rank {rank}")


def _equal_batch_count(dataset: TarredAudioDataset, manifests: Any, tarred: Any, strategy: str,
                       shard_manifests: bool, world_size: int, num_workers: int, batch_size: int,
                       drop_last: bool) -> int:
    """Batches per epoch every rank serves: the fewest any rank's workers would make.

    Computed identically on every rank without communication: from the full (filtered) manifest's
    ``shard_id`` counts, or with ``shard_manifests`` from the sharded manifests' line counts.
    """
    if shard_manifests:
        pairs = zip(expand_sharded_filepaths(tarred, "replicate"), expand_sharded_filepaths(manifests, "replicate"))
        per_shard = {shard: count_manifest_lines(manifest) for shard, manifest in pairs}
    else:
        by_id: dict[int, int] = {}
        for entry in dataset.entries:
            if "shard_id" in entry.extra:
                by_id[int(entry.extra["shard_id"])] = by_id.get(int(entry.extra["shard_id"]), 0) + 1
        per_shard = {}
        for shard in expand_sharded_filepaths(tarred, "replicate"):
            index = shard_index(shard)
            per_shard[shard] = by_id.get(index, 0) if index is not None else 0
        if not any(per_shard.values()):  # manifest without shard ids: assume an even spread
            share = len(dataset.entries) / max(1, len(per_shard))
            per_shard = {shard: int(share) for shard in per_shard}
    counts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in range(world_size):
            shards = expand_sharded_filepaths(tarred, strategy, world_size, r) if world_size > 1 else \
                expand_sharded_filepaths(tarred, "replicate")
            workers = [sum(per_shard.get(s, 0) for s in shards[w::num_workers]) for w in range(num_workers)]
            counts.append(expected_batches(workers, batch_size, drop_last))
    return min(counts)


def _bucketing_loader(cfg: dict, tokenizer: Any, train: bool, seed: int, name: str, world_size: int,
                      rank: int) -> BucketChainLoader:
    manifests = [_as_list(m) for m in cfg["manifest_filepath"]]
    is_tarred = bool(cfg.get("is_tarred", False))
    tarred = [_as_list(t) for t in cfg["tarred_audio_filepaths"]] if is_tarred else None
    if tarred is not None and len(tarred) != len(manifests):
        raise ValueError(f"model.{name}: manifest_filepath has {len(manifests)} buckets but "
                         f"tarred_audio_filepaths has {len(tarred)}")
    weights = cfg.get("bucketing_weights")
    if weights is not None:
        weights = list(weights)
        if any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in weights):
            raise ValueError(f"model.{name}.bucketing_weights must be positive integers, got {weights}")
    sizes = bucketing_batch_sizes(cfg.get("bucketing_batch_size"), len(manifests), int(cfg["batch_size"]), weights)
    logger.info("model.%s: %d buckets, batch sizes %s, weights %s, strategy %s", name, len(manifests), sizes,
                weights, cfg.get("bucketing_strategy", "synced_randomized"))
    sources = []
    for b, manifest in enumerate(manifests):
        if tarred is not None:
            source = _tarred_loader(cfg, _single(manifest), _single(tarred[b]), sizes[b], tokenizer, train,
                                    seed + b, f"{name} bucket {b + 1}", world_size, rank)
        else:
            source = _manifest_loader(cfg, manifest, sizes[b], tokenizer, train, seed + b,
                                      f"{name} bucket {b + 1}", world_size, rank, resumable=False)
        sources.extend([source] * (weights[b] if weights else 1))
    strategy = cfg.get("bucketing_strategy", "synced_randomized") if train else "fixed_order"
    return BucketChainLoader(sources, strategy=strategy, seed=seed, rank=rank)


def _as_list(value: Any) -> list:
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    return [os.fspath(v) for v in value]


def _single(paths: list) -> Any:
    return paths[0] if len(paths) == 1 else paths
