"""A dataset section (``model.train_ds`` / ``validation_ds`` / ``test_ds``, NeMo's keys) as a typed spec.

:class:`DatasetSpec` is the one list of dataset keys and their defaults: ``myna.config`` builds the
recipe defaults from it, and :func:`myna.data.factory.build_loader` parses a section into it once
(:meth:`DatasetSpec.from_section`), checking every key and value, before anything is read. Below
the factory the readers take plain typed keyword arguments.

>>> spec = DatasetSpec.from_section({"manifest_filepath": "train.json", "batch_size": 8}, "train_ds")
>>> spec.batch_size, spec.shuffle, spec.sample_rate
(8, False, 16000)
>>> DatasetSpec.from_section({"batchsize": 8}, "train_ds")
Traceback (most recent call last):
ValueError: model.train_ds.batchsize is not a dataset key ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["DatasetSpec", "dataset_defaults", "BUCKETING_STRATEGIES", "SHARD_STRATEGIES"]

BUCKETING_STRATEGIES = ("fixed_order", "synced_randomized", "fully_randomized")
SHARD_STRATEGIES = ("scatter", "replicate")

# NeMo keys whose non-default values myna does not implement.
_UNSUPPORTED = ("trim_silence", "use_start_end_token")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset section, NeMo's keys with NeMo's meaning (defaults here and nowhere else).

    Which loader a spec makes (:func:`myna.data.factory.build_loader`): ``use_lhotse`` -> Lhotse
    dynamic batching; ``manifest_filepath`` as a list of lists -> static bucketing; ``is_tarred``
    -> streamed tar shards; otherwise manifest batches (random or semi-sorted).
    """

    # -- sources
    manifest_filepath: Any = None
    """A manifest path, comma-separated paths or a list; ``[[b1.json], [b2.json]]`` for static
    buckets; ``[[a.json, 0.7], [b.json, 0.3]]`` for weighted Lhotse sources."""
    sample_rate: int = 16000
    """Hz the audio is resampled to (recipes interpolate ``${model.sample_rate}``)."""
    text_field: str = "text"
    """Manifest key of the transcript."""
    # -- batches
    batch_size: int | None = 16
    """Utterances per batch (per rank); with Lhotse a cap next to ``batch_duration`` (None: no cap)."""
    shuffle: bool = False
    """Reshuffle every epoch (only when training)."""
    drop_last: bool = False
    """Drop utterances so every batch is full (only when training)."""
    num_workers: int = 0
    """DataLoader processes (0: decode in the training process)."""
    pin_memory: bool = False
    """Pin batches for faster host-to-GPU copies."""
    min_duration: float | None = None
    """Drop (counted and logged) utterances shorter than this many seconds."""
    max_duration: float | None = None
    """Drop (counted and logged) utterances longer than this many seconds."""
    use_semi_sorted_batching: bool = False
    """NeMo's semi-sorted batches: sort by duration plus noise, less padding."""
    randomization_factor: float = 0.1
    """Noise of semi-sorted batching, a fraction of the duration range (0: fully sorted)."""
    # -- accepted NeMo keys whose non-default values are not implemented
    trim_silence: bool = False
    use_start_end_token: bool = False
    # -- tarred shards
    is_tarred: bool = False
    """Read NeMo tar shards (``tarred_audio_filepaths``; the manifest names their members)."""
    tarred_audio_filepaths: Any = None
    """Shard paths: a list or a brace pattern (``audio_{0..63}.tar``, ``audio__OP_0..63_CL_.tar``)."""
    tarred_shard_strategy: str = "scatter"
    """``scatter``: each rank reads its own shards; ``replicate``: every rank reads every shard."""
    shuffle_n: int = 2048
    """Shuffle buffer of the tar stream, in utterances (larger: better mixing, more memory)."""
    shard_manifests: bool = False
    """Read only the sharded manifests of this rank's shards."""
    # -- static bucketing
    bucketing_strategy: str = "synced_randomized"
    """Order in which buckets are played: fixed_order, synced_randomized, fully_randomized."""
    bucketing_batch_size: Any = None
    """None: ``batch_size`` everywhere; an int b: bucket i of N gets ``b * (N - i)``; a list: one each."""
    bucketing_weights: Any = None
    """Positive ints: how many times each bucket is played per epoch."""
    # -- Lhotse dynamic batching
    use_lhotse: bool = False
    """Batches by total duration from Lhotse cut sources."""
    batch_duration: float | None = None
    """Seconds of audio per batch (per rank)."""
    quadratic_duration: float | None = None
    """A cut counts ``d + d**2 / quadratic_duration`` seconds (penalises long cuts)."""
    use_bucketing: bool = False
    """Dynamic duration buckets (Lhotse's DynamicBucketingSampler)."""
    num_buckets: int = 30
    """Duration buckets of dynamic bucketing."""
    bucket_duration_bins: Any = None
    """Bucket boundaries in seconds (None: estimated from the first cuts)."""
    num_cuts_for_bins_estimate: int = 10000
    """Cuts read to estimate the bins (more: better bins, slower start)."""
    bucket_buffer_size: int = 10000
    """Cuts held to fill the buckets (larger: better buckets, more memory)."""
    shuffle_buffer_size: int = 10000
    """Cuts held for shuffling (larger: better mixing, more memory)."""
    seed: Any = None
    """Lhotse RNG seed: an int, "trng" or "randomized"; None: the run's seed."""
    shard_seed: Any = "trng"
    """Shard order and source mixing: an int (same on every rank), "randomized" (from seed, rank
    and worker: reproducible), "trng" (fresh per process: not reproducible)."""
    lang_field: str = "lang"
    """Manifest key of the language."""
    augmentor: Any = None
    """NeMo's waveform perturbations (``speed``, ``white_noise``, ``gain``, ``shift``,
    ``random_segment``, each with ``prob``), applied as audio is read; training only
    (:mod:`myna.data.augment`)."""
    force_finite: bool = False
    """One pass per epoch instead of endless repetition of the training sources."""
    input_cfg: Any = None
    """Weighted source tree (``type``: nemo, nemo_tarred, lhotse, lhotse_shar, group), or a YAML file."""
    cuts_path: Any = None
    """A Lhotse CutSet manifest."""
    shar_path: Any = None
    """A Lhotse Shar folder (or a dict of field -> shard lists)."""
    # -- text-only data (hybrid ASR-TTS) and token-budgeted multimodal batches
    text_data: Any = None
    """NeMo's hybrid ASR-TTS text-only data: ``manifest_filepath`` of text records, ``speakers_filepath``,
    ``min_words``/``max_words``, ``asr_tts_sampling_*``, and myna's ``tts`` backend section
    (:func:`myna.data.text_only.build_text_dataset`); mixed into the manifest's audio batches."""
    tts: Any = None
    """TTS backend that speaks Lhotse text sources (``txt``, ``txt_pair``, ``txt_jsonl`` in ``input_cfg``):
    ``{backend: espeak, ...}`` (:func:`myna.data.tts.build_synthesizer`; default espeak)."""
    use_multimodal_sampling: bool = False
    """Lhotse: measure audio and text examples in tokens (NeMo's MultimodalSamplingConstraint)."""
    batch_tokens: int | None = None
    """Token budget of a multimodal batch (examples x longest)."""
    token_equivalent_duration: float | None = None
    """Seconds of audio one token is worth in multimodal sampling (e.g. 0.08)."""
    quadratic_factor: float | None = None
    """Multimodal sampling: an example of L tokens counts L + L**2 / quadratic_factor."""

    @classmethod
    def from_section(cls, section: Any, name: str = "train_ds") -> "DatasetSpec":
        """Parse a dataset section (DictConfig, dict or DatasetSpec).

        Raises:
            ValueError: naming ``model.<name>.<key>``: an unknown key, a value of the wrong type,
                an unsupported value, or keys that contradict each other.
        """
        if isinstance(section, DatasetSpec):
            return section
        values = _plain(section)
        if not isinstance(values, Mapping):
            raise ValueError(f"model.{name} must be a mapping of dataset keys, got {type(section).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"model.{name}.{key} is not a dataset key (known keys: {', '.join(known)})")
            kwargs[key] = _coerce(value, known[key], f"model.{name}.{key}")
        spec = cls(**kwargs)
        spec._check(name)
        return spec

    def _check(self, name: str) -> None:
        where = f"model.{name}"
        for key in _UNSUPPORTED:
            if getattr(self, key):
                raise ValueError(f"{where}.{key}={getattr(self, key)} is not supported yet")
        if self.tarred_shard_strategy not in SHARD_STRATEGIES:
            raise ValueError(f"{where}.tarred_shard_strategy must be one of {SHARD_STRATEGIES}, "
                             f"got {self.tarred_shard_strategy!r}")
        if self.bucketing_strategy not in BUCKETING_STRATEGIES:
            raise ValueError(f"{where}.bucketing_strategy must be one of {BUCKETING_STRATEGIES}, "
                             f"got {self.bucketing_strategy!r}")
        if self.is_tarred and self.manifest_filepath and not self.tarred_audio_filepaths:
            raise ValueError(f"{where}.is_tarred is true but tarred_audio_filepaths is not set")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"{where}.batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"{where}.num_workers must be >= 0, got {self.num_workers}")
        if self.sample_rate <= 0:
            raise ValueError(f"{where}.sample_rate must be positive, got {self.sample_rate}")
        if self.min_duration is not None and self.max_duration is not None and self.min_duration > self.max_duration:
            raise ValueError(f"{where}: min_duration {self.min_duration} > max_duration {self.max_duration}")
        if self.randomization_factor < 0:
            raise ValueError(f"{where}.randomization_factor must be >= 0, got {self.randomization_factor}")
        if self.shuffle_n < 0:
            raise ValueError(f"{where}.shuffle_n must be >= 0, got {self.shuffle_n}")
        for key in ("num_buckets", "num_cuts_for_bins_estimate", "bucket_buffer_size", "shuffle_buffer_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{where}.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("seed", "shard_seed"):
            value = getattr(self, key)
            if not (value is None and key == "seed") and value not in ("trng", "randomized") and (
                    not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f'{where}.{key} must be an integer, "trng" or "randomized", got {value!r}')
        if self.text_data is not None and not isinstance(self.text_data, Mapping):
            raise ValueError(f"{where}.text_data must be a section (manifest_filepath, ...), got {self.text_data!r}")
        if self.text_data and self.use_lhotse:
            raise ValueError(f"{where}.text_data is the map-style hybrid path; with use_lhotse put text sources "
                             f"(type: txt, txt_pair, txt_jsonl) in input_cfg instead")
        if self.use_multimodal_sampling and not self.token_equivalent_duration:
            raise ValueError(f"{where}.use_multimodal_sampling needs token_equivalent_duration (seconds per token)")
        weights = self.bucketing_weights
        if weights is not None and (not isinstance(weights, (list, tuple)) or any(
                not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in weights)):
            raise ValueError(f"{where}.bucketing_weights must be positive integers, got {weights}")

    @property
    def has_source(self) -> bool:
        """Whether the section names any data (an unset section makes no loader)."""
        if self.use_lhotse:
            return any((self.manifest_filepath, self.input_cfg, self.cuts_path, self.shar_path))
        return bool(self.manifest_filepath) or bool(self.text_data)


def dataset_defaults(**overrides: Any) -> dict[str, Any]:
    """The dataset keys and their defaults as a plain dict (for the recipe schema), with overrides."""
    defaults = {f.name: f.default for f in dataclasses.fields(DatasetSpec)}
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise KeyError(f"not dataset keys: {sorted(unknown)}")
    defaults.update(overrides)
    return defaults


def _plain(section: Any) -> Any:
    if type(section).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(section, resolve=True)
    return section


def _coerce(value: Any, field: dataclasses.Field, where: str) -> Any:
    """Check a value against its field's type: bools stay bools, ints accept integral floats,
    floats accept ints. None keeps its meaning where the type allows it ("unset") and stands for
    the default elsewhere (NeMo writes null for "use the default")."""
    kind = str(field.type)
    if value is None:
        return None if "None" in kind else field.default
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
    elif kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return int(value)
    elif kind.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number, got {value!r}")
        return float(value)
    elif kind.startswith("str") and not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {value!r}")
    return value
