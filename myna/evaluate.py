"""Evaluation of a loaded model on a manifest: batched decoding (greedy or beam), WER/CER, RTFx.

:func:`evaluate_manifest` decodes a NeMo manifest with any strategy of :func:`myna.decoding.decode`
(optionally with an ARPA n-gram fused in) and writes one JSON line per utterance::

    {"id": ..., "audio_filepath": ..., "reference": ..., "hypothesis": ..., "word_errors": 2,
     "reference_words": 5, "wer_contribution": 0.004, "duration": 1.9}

``wer_contribution`` is the utterance's word errors over the corpus's reference words, so the
column sums to the corpus WER and sorting by it lists the utterances that cost the most.
RTFx counts featurizer, encoder and search (not audio loading).

An utterance whose audio cannot be used (missing, undecodable, empty, NaN/inf samples) is not
scored: it is warned about, named in :attr:`EvaluationResult.skipped` and left out of the rates,
instead of being scored as garbage. A manifest with no utterance, or none left to score, and a
line without the transcript key are errors, not a 0% WER.

Reference and hypothesis are normalised alike before scoring (:mod:`myna.text.normalize`): by
default with the tokenizer's own normaliser (a case-folding tokenizer's lower-case output is not
scored against upper-case references), optionally with NeMo's evaluation options (lower-casing,
punctuation removal). The reference characters that the tokenizer cannot write are counted.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from myna.audio import AudioError
from myna.data.loader import load_entry_audio
from myna.data.manifest import read_manifest
from myna.decoding import decode, resolve_strategy
from myna.decoding.backends import inference_encoder
from myna.metrics import ErrorRates, error_rates
from myna.models.base import pad_batch
from myna.text.normalize import ScoringNormalizer, describe_unknown, unknown_characters

__all__ = ["EvaluationResult", "evaluate_manifest"]

log = logging.getLogger("myna.evaluate")


@dataclass
class EvaluationResult:
    rates: ErrorRates
    num_utterances: int
    audio_seconds: float
    compute_seconds: float
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (utterance, reason), not scored
    normalization: str = ""  # what was applied to reference and hypothesis
    unknown_characters: dict[str, int] | None = None  # reference characters the tokenizer cannot write
    unknown_utterances: int = 0  # references holding one

    def unknown_summary(self) -> str | None:
        """One line on the reference characters the model cannot write, or None."""
        if not self.unknown_characters:
            return None
        from collections import Counter

        total = sum(self.unknown_characters.values())
        return (f"{total} reference character(s) in {self.unknown_utterances} utterance(s) cannot be written by "
                f"the tokenizer (they count as errors): {describe_unknown(Counter(self.unknown_characters))}")

    @property
    def rtfx(self) -> float:
        """Seconds of audio decoded per second of compute."""
        return self.audio_seconds / max(self.compute_seconds, 1e-9)


def _sample_rate(model) -> int:
    return int(model.preprocessor.sample_rate)


def evaluate_manifest(model, manifest: str | Path, batch_size: int = 16, output: str | Path | None = None,
                      progress: bool = True, strategy: str = "greedy", beam_size: int = 4, lm=None,
                      lm_weight: float = 0.0, lm_unit: str = "word", normalizer: ScoringNormalizer | None = None,
                      **decode_options) -> EvaluationResult:
    """Decode every utterance of a manifest and score it against the manifest text.

    Args:
        model: any myna model (``featurize``, ``encoder``, ``tokenizer``, and the decoding protocol
            of :class:`myna.decoding.DecodableModel`).
        manifest: NeMo JSON-lines manifest with ``text``.
        batch_size: utterances per batch (sorted by duration to reduce padding).
        output: write per-utterance JSON lines here (see the module docstring).
        progress: show a progress bar.
        strategy: one of ``model.decoding_strategies`` (``greedy``, ``modified_beam``, ``beam`` for
            Transducers; ``ctc_greedy``, ``ctc_beam`` for CTC heads; see :func:`myna.decoding.resolve_strategy`).
        beam_size, lm, lm_weight, lm_unit, decode_options: passed to :func:`myna.decoding.decode`;
            an ARPA path in ``lm`` is read once here.
        normalizer: applied to reference and hypothesis before scoring (default: the tokenizer's
            normalisation, :class:`~myna.text.normalize.ScoringNormalizer`).
    """
    tokenizer = getattr(model, "tokenizer", None)
    if normalizer is None:
        normalizer = ScoringNormalizer(tokenizer)
    model.eval()
    strategy = resolve_strategy(model, strategy)  # a strategy the model cannot run fails before any audio is read
    entries = read_manifest(manifest, require_text=True)
    if not entries:
        raise ValueError(f"{manifest}: the manifest has no utterances to evaluate")
    sample_rate = _sample_rate(model)
    if lm is not None and not hasattr(lm, "token_scores"):
        from myna.decoding.lm import load_lm_scorer

        if getattr(model, "tokenizer", None) is None:
            raise ValueError("LM fusion needs the model's tokenizer")
        lm = load_lm_scorer(lm, model.tokenizer.pieces, lm_unit)
    audio_seconds = compute_seconds = 0.0
    order = sorted(range(len(entries)), key=lambda i: entries[i].duration)  # less padding
    results: dict[int, str] = {}
    skipped: dict[int, str] = {}
    # The bar only on a terminal: redirected, its carriage returns make one endless line.
    bar_off = not progress or not sys.stderr.isatty()
    encoder = inference_encoder(model.encoder)  # a backend's encoder is already what inference runs
    for start in tqdm(range(0, len(order), batch_size), desc="evaluate", disable=bar_off, unit="batch"):
        chunk, waves = [], []
        for i in order[start:start + batch_size]:
            try:
                waves.append(load_entry_audio(entries[i], sample_rate))
                chunk.append(i)
            except AudioError as err:
                skipped[i] = str(err)
                log.warning("not scored: %s", err)
        if not chunk:
            continue
        audio, lengths = pad_batch(waves)
        audio_seconds += float(lengths.sum()) / sample_rate
        began = time.perf_counter()
        with torch.inference_mode():
            features, feature_lengths = model.featurize(audio, lengths)
            encoded, encoded_lengths = encoder(features, feature_lengths)
            decoded = decode(model, encoded, encoded_lengths, strategy=strategy, beam_size=beam_size, lm=lm,
                             lm_weight=lm_weight, lm_unit=lm_unit, **decode_options)
        compute_seconds += time.perf_counter() - began
        for i, hyp in zip(chunk, decoded):
            results[i] = hyp.text or ""
    if not results:
        raise ValueError(f"{manifest}: no utterance could be scored; all {len(entries)} have bad audio, e.g. "
                         f"{next(iter(skipped.values()))}")
    if skipped:
        log.warning("%s: %d of %d utterance(s) not scored (bad audio)", manifest, len(skipped), len(entries))
    all_entries, entries = entries, [entry for i, entry in enumerate(entries) if i in results]
    hyps = [normalizer(results[i]) for i in sorted(results)]
    refs = [normalizer(entry.text) for entry in entries]
    rates = error_rates(refs, hyps)
    unknown, unknown_utterances = {}, 0
    if tokenizer is not None and hasattr(tokenizer, "unk_id"):
        unknown = dict(unknown_characters(tokenizer, refs))
        if unknown:
            unknown_utterances = sum(1 for ref in refs if any(ch in unknown for ch in ref))
    if output is not None:
        total_words = max(rates.reference_words, 1)
        with open(output, "w") as handle:
            for entry, ref, hyp in zip(entries, refs, hyps):
                utt = error_rates([ref], [hyp])
                errors = utt.substitutions + utt.insertions + utt.deletions
                extra = entry.extra or {}
                utt_id = extra.get("utt_id") or extra.get("id") or Path(str(entry.audio_filepath)).stem
                handle.write(json.dumps({"id": utt_id, "audio_filepath": str(entry.audio_filepath), "reference": ref,
                                         "hypothesis": hyp, "word_errors": errors,
                                         "reference_words": utt.reference_words,
                                         "wer_contribution": errors / total_words,
                                         "duration": entry.duration}) + "\n")
    return EvaluationResult(rates, len(entries), audio_seconds, compute_seconds,
                            skipped=[(f"{e.where}", skipped[i]) for i, e in enumerate(all_entries) if i in skipped],
                            normalization=normalizer.describe(), unknown_characters=unknown,
                            unknown_utterances=unknown_utterances)
