"""Text-only training data: NeMo's text-only records, Lhotse's text sources, mixing with audio.

**Records** (NeMo's ``train_ds.text_data.manifest_filepath``, JSON lines)::

    {"text": "three one four", "tts_text_normalized": "three one four"}

``text`` is the ASR target; the TTS input is ``tts_text_normalized``, else ``tts_text``, else
``text`` (NeMo needs one of the first two; myna speaks ``text`` when neither is there). Records
whose ``text`` has fewer than ``min_words`` or more than ``max_words`` words are dropped, counted
and logged (NeMo's defaults: 1 and 45). ``speakers_filepath`` lists integer speaker ids, one
drawn per record (:func:`myna.data.tts.speaker_ids`).

**Lhotse sources** in ``input_cfg`` (NeMo's types and keys):

- ``type: txt`` with ``paths`` (one text per line; also ``language``);
- ``type: txt_pair`` with ``source_paths`` and ``target_paths`` (line by line): the source is what
  the TTS speaks, the target the transcript (e.g. unnormalised / normalised text);
- ``type: txt_jsonl`` with ``paths`` of NeMo text-only records (above; ``text_field``).

Their examples are Lhotse ``TextExample`` / ``TextPairExample`` objects carrying the ASR token
ids. With ``use_multimodal_sampling`` the sampler measures every example in tokens
(:class:`MultimodalConstraint`, NeMo's ``MultimodalSamplingConstraint``): an audio cut counts
``ceil(duration / token_equivalent_duration)``, a text example its number of tokens; a batch holds
at most ``batch_tokens`` (with ``quadratic_factor`` an example of length L counts
``L + L**2 / quadratic_factor``; the budget also covers padding: examples x longest).

**Hybrid ASR-TTS**: text examples become speech through a TTS backend
(:class:`myna.data.tts.Synthesizer`) inside the data loader and join the audio batches; each batch
then carries ``synthetic`` (B,) bool so training can count real and synthetic examples apart.
For map-style data (no Lhotse), :class:`MixedDataset` mixes an audio dataset and a
:class:`TextToSpeechDataset` as NeMo's ``ConcatMapDataset`` does (``asr_tts_sampling_technique``
temperature | random | round-robin).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from lhotse.cut import Cut
from lhotse.dataset.sampling.base import TokenConstraint

from myna.data.stores import is_url, localize

__all__ = [
    "TextRecord",
    "TextFilterReport",
    "read_text_records",
    "read_text_lines",
    "read_text_pairs",
    "filter_by_words",
    "TextToSpeechDataset",
    "MixedDataset",
    "collate_mixed",
    "mix_indices",
    "MultimodalConstraint",
    "LhotseTextSource",
    "SAMPLING_TECHNIQUES",
    "estimated_speech_seconds",
    "TEXT_DATA_KEYS",
    "build_text_dataset",
    "mixed_loader",
]

logger = logging.getLogger("myna.data")

SAMPLING_TECHNIQUES = ("temperature", "random", "round-robin")
# For samplers that sort by duration before the audio exists: roughly espeak-ng's and a
# read-speech rate (2.5 words per second) plus the trimmed margins.
SECONDS_PER_WORD = 0.4
SECONDS_MARGIN = 0.2


@dataclass
class TextRecord:
    """One text-only example.

    Attributes:
        text: the ASR target.
        tts_text: what the TTS speaks.
        where: ``file:line`` (messages, cache keys).
        language: optional language tag.
    """

    text: str
    tts_text: str
    where: str = ""
    language: str | None = None

    @property
    def num_words(self) -> int:
        return len(self.text.split())


@dataclass
class TextFilterReport:
    """What a word-count filter kept and dropped (NeMo logs the skipped utterances and words)."""

    total: int = 0
    kept: int = 0
    dropped: dict[str, tuple[int, int]] = field(default_factory=dict)  # reason -> (records, words)

    def drop(self, reason: str, words: int) -> None:
        n, w = self.dropped.get(reason, (0, 0))
        self.dropped[reason] = (n + 1, w + words)

    def __str__(self) -> str:
        head = f"kept {self.kept} of {self.total} text records"
        if not self.dropped:
            return head + "; dropped nothing"
        return head + "; dropped " + ", ".join(f"{n} with {reason} ({w} words)"
                                               for reason, (n, w) in self.dropped.items())


def _paths(value: Any) -> list[str]:
    if isinstance(value, (str, os.PathLike)):
        return [p.strip() for p in os.fspath(value).split(",") if p.strip()]
    return [os.fspath(p) for p in value]


def _open_text(path: str):
    """A text file, local or in a store (stores are cached locally first)."""
    local = localize(path) if is_url(path) else os.path.expanduser(path)
    if not os.path.isfile(local):
        raise ValueError(f"text file not found: {path}")
    return open(local, encoding="utf-8")


def read_text_records(paths: Any, text_field: str = "text") -> list[TextRecord]:
    """NeMo text-only records (JSON lines) from one or more files (local paths or URLs).

    Raises:
        ValueError: a missing file, a line that is not a JSON object, a missing or non-string
            ``text_field``, or a non-string ``tts_text``/``tts_text_normalized``, naming file:line.
    """
    records = []
    for path in _paths(paths):
        with _open_text(path) as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{line_no}"
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from None
                if not isinstance(item, dict):
                    raise ValueError(f"{where}: expected a JSON object")
                text = item.get(text_field)
                if not isinstance(text, str):
                    raise ValueError(f"{where}: missing or non-string '{text_field}' (keys: {sorted(item)})")
                tts = item.get("tts_text_normalized", item.get("tts_text", text))
                if not isinstance(tts, str):
                    raise ValueError(f"{where}: 'tts_text' / 'tts_text_normalized' must be a string, got {tts!r}")
                lang = item.get("lang")
                records.append(TextRecord(text=text, tts_text=tts, where=where,
                                          language=lang if isinstance(lang, str) else None))
    return records


def read_text_lines(paths: Any, language: str | None = None) -> list[TextRecord]:
    """Plain text files, one text per line (Lhotse's ``txt``); blank lines are skipped."""
    records = []
    for path in _paths(paths):
        with _open_text(path) as f:
            for line_no, line in enumerate(f, start=1):
                text = line.strip()
                if text:
                    records.append(TextRecord(text=text, tts_text=text, where=f"{path}:{line_no}", language=language))
    return records


def read_text_pairs(source_paths: Any, target_paths: Any) -> list[TextRecord]:
    """Lhotse's ``txt_pair``: line i of each source file is spoken, line i of its target file is the
    transcript. Files pair up in order and must have as many lines.

    Raises:
        ValueError: unequal file or line counts, naming the files.
    """
    sources, targets = _paths(source_paths), _paths(target_paths)
    if len(sources) != len(targets):
        raise ValueError(f"txt_pair: {len(sources)} source files but {len(targets)} target files")
    records = []
    for src, tgt in zip(sources, targets):
        with _open_text(src) as fs, _open_text(tgt) as ft:
            s_lines, t_lines = fs.read().splitlines(), ft.read().splitlines()
        if len(s_lines) != len(t_lines):
            raise ValueError(f"txt_pair: {src} has {len(s_lines)} lines but {tgt} has {len(t_lines)}")
        for line_no, (s, t) in enumerate(zip(s_lines, t_lines), start=1):
            if s.strip() and t.strip():
                records.append(TextRecord(text=t.strip(), tts_text=s.strip(), where=f"{src}:{line_no}"))
    return records


def filter_by_words(records: Sequence[TextRecord], min_words: int | None = 1, max_words: int | None = 45,
                    name: str = "") -> tuple[list[TextRecord], TextFilterReport]:
    """Keep records whose ``text`` has ``min_words <= words <= max_words`` (None: no bound); what is
    dropped is counted and logged (WARNING when anything was)."""
    if min_words is not None and max_words is not None and min_words > max_words:
        raise ValueError(f"min_words {min_words} > max_words {max_words}")
    report = TextFilterReport()
    kept = []
    for record in records:
        report.total += 1
        n = record.num_words
        if min_words is not None and n < min_words:
            report.drop(f"< {min_words} words", n)
        elif max_words is not None and n > max_words:
            report.drop(f"> {max_words} words", n)
        else:
            kept.append(record)
            report.kept += 1
    (logger.warning if report.dropped else logger.info)("%s%s", f"{name}: " if name else "", report)
    return kept, report


def estimated_speech_seconds(text: str) -> float:
    """A guess at how long speech of ``text`` lasts, for duration-sorting samplers."""
    return SECONDS_MARGIN + SECONDS_PER_WORD * max(1, len(text.split()))


class TextToSpeechDataset(torch.utils.data.Dataset):
    """Map-style dataset of synthesised utterances from text-only records.

    Args:
        records: text-only records (already filtered).
        tokenizer: ``encode(text) -> ids`` of the ASR model (None: empty token sequences).
        synthesizer: ``synthesizer(text, speaker=..., key=...) -> (L,) float32`` at the model's rate
            (:class:`myna.data.tts.Synthesizer`).
        speakers: speaker ids to draw from (None: the backend's own choice per record).
        seed: the speaker draw of record i depends only on (seed, i).

    Items: ``audio`` (L,) float32, ``tokens`` (U,) int64, ``index`` (int), ``synthetic`` True.
    """

    def __init__(self, records: Sequence[TextRecord], tokenizer: Any, synthesizer: Any,
                 speakers: Sequence[int] | None = None, seed: int = 0):
        self.records = list(records)
        self.tokens = [tokenizer.encode(r.text) if tokenizer is not None else [] for r in self.records]
        self.synthesizer = synthesizer
        self.speakers = list(speakers) if speakers else None
        self.seed = seed

    def __len__(self) -> int:
        return len(self.records)

    @property
    def durations(self) -> list[float]:
        """Estimated seconds (the audio does not exist yet)."""
        return [estimated_speech_seconds(r.tts_text) for r in self.records]

    def speaker_of(self, index: int) -> int | None:
        if not self.speakers:
            return None
        return random.Random(self.seed * 1_000_003 + index).choice(self.speakers)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        audio = self.synthesizer(record.tts_text, speaker=self.speaker_of(index), key=record.where or str(index))
        return {"audio": audio, "tokens": torch.tensor(self.tokens[index], dtype=torch.int64), "index": index,
                "synthetic": True}


def mix_indices(lengths: Sequence[int], technique: str = "temperature", temperature: float = 5.0,
                probabilities: Sequence[float] | None = None, seed: int | None = None) -> list[tuple[int, int]]:
    """NeMo's ``ConcatMapDataset`` index list: (dataset id, index within it) pairs.

    - ``round-robin``: alternate datasets, ``max(lengths) * len(lengths)`` pairs;
    - ``random``: draw a dataset with ``probabilities`` per pair;
    - ``temperature``: as random with ``p_i ∝ len_i ** (1 / temperature)``.

    Random draws continue until every dataset has been used up once; each dataset is read in a
    fresh random permutation each time it is used up.
    """
    if technique not in SAMPLING_TECHNIQUES:
        raise ValueError(f"sampling technique must be one of {SAMPLING_TECHNIQUES}, got {technique!r}")
    if not lengths or any(n <= 0 for n in lengths):
        raise ValueError(f"every dataset to mix needs at least one example, got sizes {list(lengths)}")
    rng = np.random.RandomState(seed)
    perms = [rng.permutation(n) for n in lengths]
    positions = [0] * len(lengths)
    out: list[tuple[int, int]] = []

    def take(d: int) -> bool:
        out.append((d, int(perms[d][positions[d]])))
        positions[d] += 1
        if positions[d] == lengths[d]:
            positions[d] = 0
            perms[d] = rng.permutation(lengths[d])
            return True
        return False

    if technique == "round-robin":
        for k in range(max(lengths) * len(lengths)):
            take(k % len(lengths))
        return out
    if technique == "random":
        if probabilities is None or len(probabilities) != len(lengths):
            raise ValueError(f"sampling technique 'random' needs {len(lengths)} probabilities, got {probabilities}")
        p = np.asarray(probabilities, dtype=np.float64)
    else:
        if temperature <= 0:
            raise ValueError(f"sampling temperature must be > 0, got {temperature}")
        p = np.power(np.asarray(lengths, dtype=np.float64), 1.0 / temperature)
    if (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"sampling probabilities must be >= 0 and not all 0, got {list(p)}")
    p = p / p.sum()
    exhausted = {int(z) for z in np.nonzero(p == 0)[0]}  # never drawn: nothing to wait for
    choices = np.arange(len(lengths))
    while len(exhausted) < len(lengths):
        d = int(rng.choice(choices, p=p))
        if take(d):
            exhausted.add(d)
    return out


class MixedDataset(torch.utils.data.Dataset):
    """Audio and text-only (synthesised) examples in one map-style dataset, mixed by
    :func:`mix_indices` once, at construction (as NeMo's ``ConcatMapDataset``).

    Items are the member datasets' items with ``index`` replaced by the position in this dataset
    and ``synthetic`` set (False for audio items that do not say).
    """

    def __init__(self, datasets: Sequence[torch.utils.data.Dataset], technique: str = "temperature",
                 temperature: float = 5.0, probabilities: Sequence[float] | None = None, seed: int = 0):
        self.datasets = list(datasets)
        self.indices = mix_indices([len(d) for d in self.datasets], technique, temperature, probabilities, seed)
        counts = np.bincount([d for d, _ in self.indices], minlength=len(self.datasets))
        logger.info("mixed %s examples per epoch from datasets of sizes %s (%s)", list(map(int, counts)),
                    [len(d) for d in self.datasets], technique)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def durations(self) -> list[float]:
        member = [list(getattr(d, "durations")) for d in self.datasets]
        return [member[d][i] for d, i in self.indices]

    @property
    def synthetic(self) -> list[bool]:
        return [isinstance(self.datasets[d], TextToSpeechDataset) for d, _ in self.indices]

    def __getitem__(self, index: int) -> dict:
        d, i = self.indices[index]
        item = dict(self.datasets[d][i])
        item["index"] = index
        item.setdefault("synthetic", False)
        return item


def collate_mixed(items: Sequence[dict]) -> dict:
    """:func:`myna.data.loader.collate_audio_text` plus ``synthetic`` (B,) bool."""
    from myna.data.loader import collate_audio_text

    batch = collate_audio_text(items)
    batch["synthetic"] = torch.tensor([bool(item.get("synthetic", False)) for item in items], dtype=torch.bool)
    return batch


# ----------------------------------------------------------------------------- config

# NeMo's ``train_ds.text_data`` keys (``TextDataConfig``) and myna's ``tts`` and ``text_field``.
TEXT_DATA_KEYS = {
    "manifest_filepath": None, "speakers_filepath": None, "min_words": 1, "max_words": 45,
    "tokenizer_workers": 1, "asr_tts_sampling_technique": None, "asr_tts_sampling_temperature": None,
    "asr_tts_sampling_probabilities": None, "text_field": "text", "tts": None,
}


def build_text_dataset(text_cfg: Mapping[str, Any], tokenizer: Any, sample_rate: int, seed: int = 0,
                       where: str = "model.train_ds.text_data") -> tuple[TextToSpeechDataset, dict]:
    """The synthesised text-only dataset of a ``text_data`` section, and its mixing options.

    Keys: NeMo's ``manifest_filepath`` (text-only records, local or URL), ``speakers_filepath``
    (optional here: the TTS backend draws voices itself without it), ``min_words``/``max_words``,
    ``asr_tts_sampling_technique`` (default temperature), ``asr_tts_sampling_temperature``
    (default 5), ``asr_tts_sampling_probabilities``; ``tokenizer_workers`` is accepted and unused
    (tokenizing is fast here); myna's ``tts`` (:func:`myna.data.tts.build_synthesizer`: backend
    ``espeak`` by default) and ``text_field``.

    Returns:
        (dataset, options for :class:`MixedDataset`: technique, temperature, probabilities).

    Raises:
        ValueError: an unknown key or missing records, naming ``where``.
    """
    from myna.data.tts import build_synthesizer, speaker_ids

    cfg = dict(text_cfg)
    unknown = sorted(set(cfg) - set(TEXT_DATA_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} (known: {sorted(TEXT_DATA_KEYS)})")
    cfg = {**TEXT_DATA_KEYS, **{k: v for k, v in cfg.items() if v is not None}}
    if not cfg["manifest_filepath"]:
        raise ValueError(f"{where}.manifest_filepath is required (text-only records, JSON lines)")
    records = read_text_records(cfg["manifest_filepath"], text_field=cfg["text_field"])
    records, _ = filter_by_words(records, cfg["min_words"], cfg["max_words"], name=where)
    if not records:
        raise ValueError(f"{where}: no text record left after the word-count filter")
    speakers = speaker_ids(cfg["speakers_filepath"]) if cfg["speakers_filepath"] else None
    synthesizer = build_synthesizer(cfg["tts"], sample_rate, where=f"{where}.tts")
    dataset = TextToSpeechDataset(records, tokenizer, synthesizer, speakers=speakers, seed=seed)
    technique = cfg["asr_tts_sampling_technique"] or "temperature"
    if technique not in SAMPLING_TECHNIQUES:
        raise ValueError(f"{where}.asr_tts_sampling_technique must be one of {SAMPLING_TECHNIQUES}, got {technique!r}")
    options = {"technique": technique, "temperature": float(cfg["asr_tts_sampling_temperature"] or 5.0),
               "probabilities": cfg["asr_tts_sampling_probabilities"]}
    return dataset, options


def mixed_loader(audio: torch.utils.data.Dataset | None, text_cfg: Mapping[str, Any], tokenizer: Any,
                 sample_rate: int, batch_size: int, seed: int, world_size: int = 1, rank: int = 0,
                 shuffle: bool = True, drop_last: bool = False, randomization_factor: float | None = None,
                 num_workers: int = 0, pin_memory: bool = False, name: str = "train_ds") -> Any:
    """A resumable loader over audio examples and synthesised text-only ones (NeMo's hybrid
    ASR-TTS training data): :class:`MixedDataset` of ``audio`` (None: text only) and the
    ``text_data`` section, batched by :class:`myna.data.sampling.DistributedBatchSampler`
    (random, or semi-sorted with ``randomization_factor`` on estimated durations for text), each
    batch carrying ``synthetic`` (B,) bool.
    """
    from myna.data.resumable import ResumableDataLoader
    from myna.data.sampling import DistributedBatchSampler

    text, options = build_text_dataset(text_cfg, tokenizer, sample_rate, seed=seed, where=f"model.{name}.text_data")
    dataset: Any = text if audio is None else MixedDataset([audio, text], seed=seed, **options)
    sampler = DistributedBatchSampler(dataset.durations, batch_size, world_size=world_size, rank=rank,
                                      shuffle=shuffle, seed=seed, drop_last=drop_last,
                                      randomization_factor=randomization_factor)
    return ResumableDataLoader(dataset, sampler, collate_fn=collate_mixed, num_workers=num_workers,
                               pin_memory=pin_memory)


# ----------------------------------------------------------------------------- Lhotse


class LhotseTextSource:
    """Text records as lazy Lhotse text examples with ASR token ids (for ``CutSet``).

    Each example is a ``TextExample`` (or, when the spoken text differs from the transcript, a
    ``TextPairExample`` with the spoken text as source and the transcript as target) whose
    ``custom`` holds ``tts_text``, ``key`` (``file:line``), ``tags`` and ``synthetic``.

    Args:
        records: the records, e.g. from :func:`read_text_lines`.
        tokenizer: ASR tokenizer (``encode``); None gives empty token arrays.
        tags: attached to every example (``input_cfg`` tags).
        shuffle: shuffle the order each pass with ``seed`` (an int; each pass adds 1).
    """

    def __init__(self, records: Sequence[TextRecord], tokenizer: Any, tags: Mapping[str, Any] | None = None,
                 shuffle: bool = False, seed: int = 0):
        self.records = list(records)
        self.tokenizer = tokenizer
        self.tags = dict(tags or {})
        self.shuffle = shuffle
        self.seed = seed
        self._pass = 0

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Any]:
        from lhotse.cut.text import TextExample, TextPairExample

        order = list(range(len(self.records)))
        if self.shuffle:
            random.Random(self.seed + self._pass).shuffle(order)
        self._pass += 1
        for i in order:
            r = self.records[i]
            ids = np.asarray(self.tokenizer.encode(r.text) if self.tokenizer is not None else [], dtype=np.int64)
            custom = {"tts_text": r.tts_text, "key": r.where or str(i), "synthetic": True, "tags": dict(self.tags)}
            custom.update(self.tags)
            if r.tts_text == r.text:
                yield TextExample(text=r.text, tokens=ids, custom=custom)
            else:
                source = TextExample(text=r.tts_text, tokens=ids)
                yield TextPairExample(source=source, target=TextExample(text=r.text, tokens=ids), custom=custom)


@dataclass
class MultimodalConstraint(TokenConstraint):
    """NeMo's ``MultimodalSamplingConstraint``: Lhotse's ``TokenConstraint`` measuring audio cuts and
    text examples in one unit, tokens.

    Build it with NeMo's names: ``MultimodalConstraint.from_nemo(token_equivalent_duration,
    batch_tokens, batch_size, quadratic_factor)``; ``token_equivalent_duration`` is the seconds of
    audio one token is worth (e.g. the encoder's frame shift times its subsampling, 0.01 * 8), the
    budget ``batch_tokens`` covers examples x longest (after the quadratic term), ``batch_size``
    caps the examples.
    """

    token_equivalent_duration: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.token_equivalent_duration is None or self.token_equivalent_duration <= 0:
            raise ValueError("use_multimodal_sampling needs token_equivalent_duration > 0 (seconds per token)")
        if self.max_tokens is None and self.max_examples is None:
            raise ValueError("use_multimodal_sampling needs batch_tokens and/or batch_size")

    @classmethod
    def from_nemo(cls, token_equivalent_duration: float | None, batch_tokens: int | None = None,
                  batch_size: int | None = None, quadratic_factor: float | None = None) -> "MultimodalConstraint":
        return cls(max_tokens=batch_tokens, max_examples=batch_size, quadratic_length=quadratic_factor,
                   token_equivalent_duration=token_equivalent_duration)

    def measure_length(self, example: Any) -> float:
        """Tokens of one example: an audio cut ``ceil(duration / token_equivalent_duration)``, a text
        example the number of its token ids."""
        if isinstance(example, Cut):
            return math.ceil(example.duration / self.token_equivalent_duration)
        tokens = getattr(example, "num_tokens", None)
        if tokens is None:
            raise ValueError(f"cannot measure a {type(example).__name__} in tokens (not audio, not tokenized text)")
        return int(tokens)
