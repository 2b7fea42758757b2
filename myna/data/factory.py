"""One entry point from a NeMo-style dataset section (``model.train_ds`` ...) to a batch loader.

:func:`build_loader` parses the section into a :class:`myna.data.spec.DatasetSpec` (every key and
value checked once) and picks the path NeMo would:

- ``use_lhotse: true`` -> Lhotse dynamic batching (:class:`myna.data.lhotse_io.LhotseLoader`);
- ``manifest_filepath`` as a list of lists -> static bucketing, one source per bucket, tarred or
  not (:class:`myna.data.sampling.BucketChainLoader`);
- ``is_tarred: true`` -> streamed tar shards (:class:`myna.data.tarred.TarredPasses`), a fixed
  number of batches per epoch, equal on every rank (:class:`myna.data.sampling.FixedLengthLoader`);
- otherwise manifest batches, random or semi-sorted (``use_semi_sorted_batching``), split over
  ranks (:class:`myna.data.resumable.ResumableDataLoader`).

Below this module every reader takes plain typed keyword arguments. Every loader is a
:class:`myna.data.resumable.ResumableLoader` (``state_dict`` / ``load_state_dict``: exact
resumption mid-epoch) and yields dicts with ``audio`` (B, Lmax) float32, ``audio_lengths`` (B,)
int64, ``tokens`` (B, Umax) int64, ``token_lengths`` (B,) int64, ``indices`` (B,) int64, ``ids``
(list of B utterance names: ``manifest:line``, or the Lhotse cut id), plus ``tags`` (list of B
dicts) when the sources carry tags. ``rank`` and ``world_size`` are explicit: a loader is built
per rank, each rank reading its own share with the same number of steps.

>>> loader = build_loader(cfg.model.train_ds, tokenizer, train=True, seed=cfg.seed, name="train_ds")
"""

from __future__ import annotations

import logging
import os
from typing import Any

from myna.data.loader import AudioToTextDataset, collate_audio_text
from myna.data.manifest import filter_entries, read_manifest
from myna.data.paths import bucketed_manifest_paths, expand_sharded_filepaths, is_nested
from myna.data.resumable import ResumableDataLoader, ResumableLoader
from myna.data.sampling import (
    BucketChainLoader,
    DistributedBatchSampler,
    FixedLengthLoader,
    bucketing_batch_sizes,
)
from myna.data.spec import DatasetSpec
from myna.data.tarred import TarredAudioDataset, TarredPasses, equal_batches_per_epoch

__all__ = ["build_loader", "manifest_loader", "tarred_loader"]

logger = logging.getLogger("myna.data")


def build_loader(section: Any, tokenizer: Any, train: bool, seed: int, name: str,
                 world_size: int = 1, rank: int = 0) -> ResumableLoader | None:
    """A batch loader for one dataset section (train_ds / validation_ds / test_ds).

    Args:
        section: the section (DictConfig, dict, or an already parsed DatasetSpec), NeMo's keys.
        tokenizer: ``encode(text) -> list[int]`` (None: empty token sequences).
        train: shuffle / drop_last / semi-sorting / endless Lhotse iteration apply only when True.
        seed: the run's seed (a section's own ``seed`` key wins for Lhotse).
        name: section name for messages (``model.<name>.<key>``).
        world_size, rank: DDP layout (each rank builds its own loader).

    Returns:
        a resumable loader of batch dicts with ``__len__`` (except Lhotse loaders), or None when
        the section names no data.

    Raises:
        ValueError: naming ``model.<name>.<key>``: unknown keys, bad values, contradicting keys.
    """
    spec = DatasetSpec.from_section(section, name)
    if not spec.has_source:
        return None
    _cache_remote_manifests(spec, world_size, rank)
    if spec.augmentor and train and (spec.use_lhotse or spec.is_tarred or is_nested(spec.manifest_filepath)
                                     or spec.text_data):
        raise ValueError(f"model.{name}.augmentor: waveform perturbations apply to plain manifests only so far "
                         "(not to tarred, bucketed, Lhotse or text_data sections)")
    if spec.use_lhotse:
        return _lhotse_loader(spec, tokenizer, train=train, seed=seed, name=name, world_size=world_size, rank=rank)
    tarred = spec.tarred_audio_filepaths if spec.is_tarred else None
    if is_nested(spec.manifest_filepath) or is_nested(tarred):
        return _bucketing_loader(spec, tokenizer, train=train, seed=seed, name=name, world_size=world_size,
                                 rank=rank)
    options = _batch_options(spec, train)
    if spec.text_data and train:
        return _hybrid_loader(spec, tokenizer, seed=seed, name=name, world_size=world_size, rank=rank,
                              options=options, semi=_semi_sorting(spec, train))
    if tarred is not None:
        return tarred_loader(spec.manifest_filepath, tarred, tokenizer, batch_size=spec.batch_size, seed=seed,
                             name=name, world_size=world_size, rank=rank, **options, **_tar_options(spec, train))
    return manifest_loader(spec.manifest_filepath, tokenizer, batch_size=spec.batch_size, seed=seed, name=name,
                           world_size=world_size, rank=rank, **options, **_semi_sorting(spec, train),
                           augmentor=_augmentor(spec, train, name))


def _augmentor(spec: DatasetSpec, train: bool, name: str):
    """The section's waveform augmentor in training; evaluation reads audio as it is."""
    from myna.data.augment import build_augmentor

    augmentor = build_augmentor(spec.augmentor, f"model.{name}.augmentor")  # checked in every mode
    if augmentor is not None and not train:
        logger.info("model.%s.augmentor is not applied: evaluation reads audio unperturbed", name)
        return None
    return augmentor


def _hybrid_loader(spec: DatasetSpec, tokenizer: Any, seed: int, name: str, world_size: int, rank: int,
                   options: dict[str, Any], semi: dict[str, Any]) -> ResumableLoader:
    """NeMo's hybrid ASR-TTS training data: the manifest's audio (if any) and ``text_data``
    spoken by a TTS backend, mixed (:func:`myna.data.text_only.mixed_loader`)."""
    from myna.data.text_only import mixed_loader

    if spec.is_tarred or is_nested(spec.manifest_filepath):
        raise ValueError(f"model.{name}.text_data mixes with plain manifests; for tarred or bucketed audio use "
                         f"use_lhotse with text sources (type: txt, txt_pair, txt_jsonl) in input_cfg")
    audio = None
    if spec.manifest_filepath:
        entries, report = filter_entries(read_manifest(spec.manifest_filepath, text_field=spec.text_field),
                                         min_duration=spec.min_duration, max_duration=spec.max_duration,
                                         name=f"model.{name}")
        if not entries:
            raise ValueError(f"model.{name}: no utterances left after filtering {spec.manifest_filepath} ({report})")
        audio = AudioToTextDataset(entries, tokenizer, spec.sample_rate)
    return mixed_loader(audio, spec.text_data, tokenizer, spec.sample_rate, spec.batch_size, seed, world_size,
                        rank, shuffle=options["shuffle"] or semi["randomization_factor"] is not None,
                        drop_last=options["drop_last"], randomization_factor=semi["randomization_factor"],
                        num_workers=spec.num_workers, pin_memory=spec.pin_memory, name=name)


def _cache_remote_manifests(spec: DatasetSpec, world_size: int, rank: int) -> None:
    """Manifests given as URLs are cached, with their audio unless the data is tarred (shards
    stream) or read by Lhotse (audio read on demand), by one rank while the others wait
    (:func:`myna.data.stores.cache_remote_data`)."""
    from myna.data.stores import RankInfo, cache_remote_data, is_url

    def flat(value: Any) -> list[str]:
        if value is None or isinstance(value, (int, float)):  # nothing, or the weight of [path, weight]
            return []
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return [p for v in value for p in flat(v)]

    manifests = flat(spec.manifest_filepath)
    if spec.shard_manifests:
        manifests = [p for m in manifests for p in expand_sharded_filepaths(m, "replicate")]
    if any(is_url(m) for m in manifests):
        ranks = RankInfo(rank, int(os.environ.get("LOCAL_RANK", rank)), world_size)
        cache_remote_data(manifests, cache_audio=not spec.is_tarred and not spec.use_lhotse, ranks=ranks)


def _batch_options(spec: DatasetSpec, train: bool) -> dict[str, Any]:
    """Keyword arguments every non-Lhotse reader shares."""
    return dict(sample_rate=spec.sample_rate, text_field=spec.text_field, min_duration=spec.min_duration,
                max_duration=spec.max_duration, shuffle=spec.shuffle and train, drop_last=spec.drop_last and train,
                num_workers=spec.num_workers, pin_memory=spec.pin_memory)


def _semi_sorting(spec: DatasetSpec, train: bool) -> dict[str, Any]:
    semi = spec.use_semi_sorted_batching and train
    return dict(randomization_factor=spec.randomization_factor if semi else None)


def _tar_options(spec: DatasetSpec, train: bool) -> dict[str, Any]:
    return dict(shuffle_n=spec.shuffle_n if spec.shuffle and train else 0, shard_strategy=spec.tarred_shard_strategy,
                shard_manifests=spec.shard_manifests)


def manifest_loader(manifests: Any, tokenizer: Any, *, sample_rate: int, batch_size: int, text_field: str = "text",
                    min_duration: float | None = None, max_duration: float | None = None, shuffle: bool = False,
                    drop_last: bool = False, randomization_factor: float | None = None, num_workers: int = 0,
                    pin_memory: bool = False, seed: int = 0, name: str = "train_ds", world_size: int = 1,
                    rank: int = 0, augmentor=None) -> ResumableDataLoader:
    """Batches of manifest entries (the plain path): random, or semi-sorted with
    ``randomization_factor``, this rank's share of them; ``augmentor`` perturbs each waveform.

    Raises:
        ValueError: no utterance left after the duration filters.
    """
    # Training and validation score against the transcript: a line without it is an error, not "".
    # Without a tokenizer (self-supervised pre-training) nothing reads it: unlabelled audio is fine.
    entries = read_manifest(manifests, text_field=text_field, require_text=tokenizer is not None)
    entries, report = filter_entries(entries, min_duration=min_duration, max_duration=max_duration,
                                     name=f"model.{name}")
    if not entries:
        raise ValueError(f"model.{name}: no utterances left after filtering {manifests} ({report})")
    # Bad audio is a counted, named skip (the batch's "skipped" list; myna.training.guards counts it).
    dataset = AudioToTextDataset(entries, tokenizer, sample_rate, skip_bad_audio=True, augmentor=augmentor)
    sampler = DistributedBatchSampler(dataset.durations, batch_size, world_size=world_size, rank=rank,
                                      shuffle=shuffle or randomization_factor is not None, seed=seed,
                                      drop_last=drop_last, randomization_factor=randomization_factor)
    return ResumableDataLoader(dataset, sampler, collate_fn=collate_audio_text, num_workers=num_workers,
                               pin_memory=pin_memory)


def tarred_loader(manifests: Any, shards: Any, tokenizer: Any, *, sample_rate: int, batch_size: int,
                  text_field: str = "text", min_duration: float | None = None, max_duration: float | None = None,
                  shuffle: bool = False, drop_last: bool = False, shuffle_n: int = 0, shard_strategy: str = "scatter",
                  shard_manifests: bool = False, num_workers: int = 0, pin_memory: bool = False, seed: int = 0,
                  name: str = "train_ds", world_size: int = 1, rank: int = 0) -> FixedLengthLoader:
    """Batches streamed from NeMo tar shards: this rank's shards, the same number of batches per
    epoch on every rank (the fewest any rank's workers would make)."""
    dataset = TarredAudioDataset(manifests, shards, tokenizer, sample_rate, shuffle_n=shuffle_n, shuffle=shuffle,
                                 shard_strategy=shard_strategy, shard_manifests=shard_manifests,
                                 world_size=world_size, global_rank=rank, min_duration=min_duration,
                                 max_duration=max_duration, text_field=text_field, seed=seed)
    num_batches = equal_batches_per_epoch(
        tarred_audio_filepaths=shards, entries=dataset.entries,
        sharded_manifests=manifests if shard_manifests else None, shard_strategy=shard_strategy,
        world_size=world_size, num_workers=num_workers, batch_size=batch_size, drop_last=drop_last)
    passes = TarredPasses(dataset, batch_size, drop_last=drop_last, num_workers=num_workers, pin_memory=pin_memory)
    logger.info("model.%s: rank %d reads %d shards, %d batches per epoch", name, rank, len(dataset.shards),
                num_batches)
    return FixedLengthLoader(passes, num_batches, name=f"model.{name} rank {rank}")


def _bucketing_loader(spec: DatasetSpec, tokenizer: Any, *, train: bool, seed: int, name: str, world_size: int,
                      rank: int) -> BucketChainLoader:
    manifests = bucketed_manifest_paths(spec.manifest_filepath, f"model.{name}.manifest_filepath")
    tarred = None
    if spec.is_tarred:
        tarred = bucketed_manifest_paths(spec.tarred_audio_filepaths, f"model.{name}.tarred_audio_filepaths")
        if len(tarred) != len(manifests):
            raise ValueError(f"model.{name}: manifest_filepath has {len(manifests)} buckets but "
                             f"tarred_audio_filepaths has {len(tarred)}")
    weights = list(spec.bucketing_weights) if spec.bucketing_weights is not None else None
    sizes = bucketing_batch_sizes(spec.bucketing_batch_size, len(manifests), spec.batch_size, weights)
    strategy = spec.bucketing_strategy if train else "fixed_order"
    logger.info("model.%s: %d buckets, batch sizes %s, weights %s, strategy %s", name, len(manifests), sizes,
                weights, strategy)
    options = _batch_options(spec, train)
    sources = []
    for b, manifest in enumerate(manifests):
        where = dict(seed=seed + b, name=f"{name} bucket {b + 1}", world_size=world_size, rank=rank)
        if tarred is not None:
            source = tarred_loader(_single(manifest), _single(tarred[b]), tokenizer, batch_size=sizes[b], **where,
                                   **options, **_tar_options(spec, train))
        else:
            source = manifest_loader(manifest, tokenizer, batch_size=sizes[b], **where, **options,
                                     **_semi_sorting(spec, train))
        sources.extend([source] * (weights[b] if weights else 1))
    return BucketChainLoader(sources, strategy=strategy, seed=seed, rank=rank)


def _single(paths: list[str]) -> Any:
    """One path as itself (brace patterns stay patterns), several as a list."""
    return paths[0] if len(paths) == 1 else paths


def _lhotse_loader(spec: DatasetSpec, tokenizer: Any, *, train: bool, seed: int, name: str, world_size: int,
                   rank: int) -> Any:
    from myna.data import lhotse_io

    base_seed = lhotse_io.resolve_int_seed(spec.seed, seed)
    shard_seed = spec.shard_seed
    if shard_seed == "randomized" and not spec.num_workers:
        shard_seed = base_seed + rank  # Lhotse resolves "randomized" from a worker's seed; here, ours
    constraint = None
    if spec.use_multimodal_sampling:  # audio and text examples measured in tokens (NeMo's names)
        from myna.data.text_only import MultimodalConstraint

        constraint = MultimodalConstraint.from_nemo(spec.token_equivalent_duration, spec.batch_tokens,
                                                    spec.batch_size, spec.quadratic_factor)
    elif spec.batch_duration is None and spec.batch_size is None:
        raise ValueError(f"model.{name}: use_lhotse needs batch_duration and/or batch_size")
    sources = lhotse_io.sources_of(spec)
    cuts, streaming = lhotse_io.read_cutset(
        sources, sample_rate=spec.sample_rate, shuffle=spec.shuffle, shard_seed=shard_seed,
        infinite=train and not spec.force_finite, min_duration=spec.min_duration, max_duration=spec.max_duration,
        text_field=spec.text_field, lang_field=spec.lang_field, tokenizer=tokenizer,
        shard_strategy=spec.tarred_shard_strategy, world_size=world_size, rank=rank)
    synthesizer = None
    if any(s.type in lhotse_io.TEXT_SOURCE_TYPES for s in sources):
        from myna.data.tts import build_synthesizer

        synthesizer = build_synthesizer(spec.tts, spec.sample_rate, where=f"model.{name}.tts")
    sampler = lhotse_io.make_sampler(
        cuts, batch_duration=spec.batch_duration, batch_size=spec.batch_size, shuffle=spec.shuffle and train,
        drop_last=spec.drop_last, quadratic_duration=spec.quadratic_duration, use_bucketing=spec.use_bucketing,
        num_buckets=spec.num_buckets, bucket_duration_bins=spec.bucket_duration_bins,
        num_cuts_for_bins_estimate=spec.num_cuts_for_bins_estimate, bucket_buffer_size=spec.bucket_buffer_size,
        shuffle_buffer_size=spec.shuffle_buffer_size, seed=shard_seed if streaming else base_seed,
        world_size=1 if streaming else world_size, rank=0 if streaming else rank, constraint=constraint)
    init = lhotse_io.lhotse_worker_init(rank, world_size, base_seed) if spec.num_workers else None
    # "trng" draws afresh in every process: the shard order when streaming, the mix of several sources
    reproducible = spec.seed != "trng" and (shard_seed != "trng" or not (streaming or len(sources) > 1))
    return lhotse_io.LhotseLoader(sampler, lhotse_io.LhotseAudioTextDataset(tokenizer, spec.sample_rate, synthesizer),
                                  streaming=streaming, num_workers=spec.num_workers, pin_memory=spec.pin_memory,
                                  worker_init_fn=init, reproducible=reproducible)
