"""Evaluation and transcription with a loaded model: batched greedy decoding, WER/CER, RTFx."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from myna.audio import load_audio
from myna.data.manifest import read_manifest
from myna.metrics import ErrorRates, error_rates

__all__ = ["EvaluationResult", "evaluate_manifest", "transcribe_files", "pad_batch"]


@dataclass
class EvaluationResult:
    rates: ErrorRates
    num_utterances: int
    audio_seconds: float
    compute_seconds: float

    @property
    def rtfx(self) -> float:
        """Seconds of audio decoded per second of compute."""
        return self.audio_seconds / max(self.compute_seconds, 1e-9)


def pad_batch(waveforms: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (L_i,) float32 -> zero-padded (B, max L) and lengths (B,) int64."""
    lengths = torch.tensor([w.shape[0] for w in waveforms], dtype=torch.long)
    audio = torch.zeros(len(waveforms), int(lengths.max()), dtype=torch.float32)
    for i, w in enumerate(waveforms):
        audio[i, : w.shape[0]] = w
    return audio, lengths


def _sample_rate(model) -> int:
    return int(model.preprocessor.sample_rate)


def evaluate_manifest(model, manifest: str | Path, batch_size: int = 16, output: str | Path | None = None,
                      progress: bool = True) -> EvaluationResult:
    """Greedy-decode every utterance of a manifest and score it against the manifest text."""
    model.eval()
    entries = read_manifest(manifest)
    sample_rate = _sample_rate(model)
    refs, hyps = [], []
    audio_seconds = compute_seconds = 0.0
    order = sorted(range(len(entries)), key=lambda i: entries[i].duration)  # less padding
    results: dict[int, str] = {}
    for start in tqdm(range(0, len(order), batch_size), desc="evaluate", disable=not progress, unit="batch"):
        chunk = order[start:start + batch_size]
        waves = [load_audio(entries[i].audio_filepath, sample_rate, offset=entries[i].offset or 0.0,
                            duration=entries[i].duration if entries[i].offset else None) for i in chunk]
        audio, lengths = pad_batch(waves)
        audio_seconds += float(lengths.sum()) / sample_rate
        began = time.perf_counter()
        decoded = model.transcribe(audio, lengths)
        compute_seconds += time.perf_counter() - began
        for i, hyp in zip(chunk, decoded):
            results[i] = hyp.text or ""
    for i, entry in enumerate(entries):
        refs.append(entry.text)
        hyps.append(results[i])
    rates = error_rates(refs, hyps)
    if output is not None:
        with open(output, "w") as handle:
            for entry, ref, hyp in zip(entries, refs, hyps):
                utt = error_rates([ref], [hyp])
                handle.write(json.dumps({"audio_filepath": str(entry.audio_filepath), "reference": ref,
                                         "hypothesis": hyp, "word_errors": utt.substitutions + utt.insertions + utt.deletions,
                                         "reference_words": utt.reference_words}) + "\n")
    return EvaluationResult(rates, len(entries), audio_seconds, compute_seconds)


def transcribe_files(model, paths: Sequence[str | Path], batch_size: int = 8) -> list[str]:
    """Greedy transcripts of audio files, in the order given."""
    model.eval()
    sample_rate = _sample_rate(model)
    texts: list[str] = []
    for start in range(0, len(paths), batch_size):
        audio, lengths = pad_batch([load_audio(p, sample_rate) for p in paths[start:start + batch_size]])
        texts.extend(hyp.text or "" for hyp in model.transcribe(audio, lengths))
    return texts
