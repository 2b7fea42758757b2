"""``myna transcribe``: audio files to text with any decoding strategy, on any device, to a file.

:func:`transcribe_files` decodes files in batches (sorted by length, results in input order) with
:func:`myna.decoding.decode`; :func:`write_transcripts` writes them as JSON lines
(``{"audio_filepath", "text"}``) or as a NeMo manifest (``audio_filepath``, ``duration``,
``pred_text``: what NeMo's ``transcribe_speech.py`` writes).

>>> rows = transcribe_files(model, ["a.wav", "b.flac"], strategy="beam", batch_size=8, device="cpu")
>>> write_transcripts(rows, "out.json", "nemo")
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from myna.audio import load_audio
from myna.decoding import decode, resolve_strategy
from myna.models.base import pad_batch

__all__ = ["Transcription", "transcribe_files", "write_transcripts", "pick_device"]


@dataclass
class Transcription:
    audio_filepath: str
    text: str
    duration: float  # seconds


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one, else CPU) or any torch device name; an unusable one is a
    ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def transcribe_files(model, paths: Sequence[str | os.PathLike], strategy: str = "greedy", beam_size: int = 4,
                     batch_size: int = 8, device: str | torch.device = "cpu") -> list[Transcription]:
    """Transcribe ``paths`` (any format libsndfile reads) in input order."""
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size} must be >= 1")
    strategy = resolve_strategy(model, strategy)
    device = pick_device(device) if isinstance(device, str) else device
    if isinstance(model, torch.nn.Module):
        model = model.to(device)
    elif device.type != "cpu":  # an inference backend (myna.decoding.backends) built for the CPU
        raise ValueError(f"--device {device}: this inference backend runs on the CPU; use --device cpu")
    model = model.eval()
    rate = int(model.preprocessor.sample_rate)
    waves = [load_audio(p, rate) for p in paths]
    order = sorted(range(len(waves)), key=lambda i: waves[i].shape[0])
    texts: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        audio, lengths = pad_batch([waves[i] for i in chunk])
        with torch.inference_mode():
            features, feature_lengths = model.featurize(audio.to(device), lengths.to(device))
            encoded, encoded_lengths = model.encoder(features, feature_lengths)
            hyps = decode(model, encoded, encoded_lengths, strategy=strategy, beam_size=beam_size)
        for i, hyp in zip(chunk, hyps):
            texts[i] = hyp.text or ""
    return [Transcription(os.fspath(p), texts[i], waves[i].shape[0] / rate) for i, p in enumerate(paths)]


def write_transcripts(rows: Sequence[Transcription], output: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write ``rows`` to ``output``: ``fmt`` ``jsonl`` (audio_filepath, text) or ``nemo`` (a NeMo
    manifest: audio_filepath, duration, pred_text); None picks ``nemo`` for ``.json``, else ``jsonl``."""
    output = Path(output)
    fmt = fmt or ("nemo" if output.suffix == ".json" else "jsonl")
    if fmt not in ("jsonl", "nemo"):
        raise ValueError(f"output format {fmt!r}: choose jsonl or nemo")
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        for row in rows:
            if fmt == "nemo":
                item = {"audio_filepath": row.audio_filepath, "duration": round(row.duration, 6), "pred_text": row.text}
            else:
                item = {"audio_filepath": row.audio_filepath, "text": row.text}
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    return output
