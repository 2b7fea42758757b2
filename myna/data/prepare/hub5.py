"""HUB5 2000 English evaluation (LDC2002S09 audio, LDC2002T43 transcripts): a sliced manifest.

Layout (under SOURCE): ``hub5e_00/english/{en,sw}_NNNN.sph`` (2 channels, 8 kHz) and
``2000_hub5_eng_eval_tr/reference/hub5e00.english.000405.stm`` (found by name anywhere below).

As NeMo's ``process_hub5_data.py``:

- STM lines starting ``;;`` and lines with ``IGNORE_TIME_SEGMENT_`` are skipped; ``<B_ASIDE>`` and
  ``<E_ASIDE>`` removed; ``(%HESITATION)``, ``(%UH)``, ``(%AH)`` -> ``UH``; ``-``, ``(``, ``)``
  removed; lower case; then ``file channel speaker begin end [<label>] text``;
- utterances sorted by (speaker, begin) are concatenated per speaker (channel A: column 0, B:
  column 1; audio ``[floor(begin*sr):ceil(end*sr)]``) until their summed times reach
  ``min_slice_duration`` (10 s), written as ``OUT/audio/<speaker>_<NNN>.wav``; a speaker's
  leftover shorter than that is dropped;
- ``OUT/manifest_hub5.json`` and ``OUT/vocab.txt`` (the sorted characters of all transcripts).

Deliberate differences: no full-length WAV copies (``full_audio_wav/``) are written; ``duration`` is
a slice's real length; NeMo's one transcript fix (en_4622 B 120.79-121.87 -> "kind of weird but")
is applied, lower-cased (NeMo builds its key with a lower-case channel, so it never matches there).
"""

from __future__ import annotations

import logging
import os
import re
from math import ceil, floor
from pathlib import Path

import numpy as np

from myna.data.prepare.common import (PrepareError, char_vocab, read_samples, run_units,
                                      write_entries, write_vocab, write_wav)

__all__ = ["prepare_hub5", "read_hub5_stm"]

logger = logging.getLogger("myna.data")

STM_LINE = re.compile(r"^(\w+)\s+(\w+)\s+(\w+)\s+([0-9.]+)\s+([0-9.]+)\s+(<.*>)?\s+(.+)$")
FIXES = {("en_4622", "b", 12079, 12187): "kind of weird but"}


def read_hub5_stm(path: str | os.PathLike) -> list[tuple[str, str, str, float, float, str]]:
    """(file, channel, speaker, begin, end, text) of each scored STM line, normalised as NeMo."""
    utterances = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if line.startswith(";;") or "IGNORE_TIME_SEGMENT_" in line or not line.strip():
                continue
            line = line.replace("<B_ASIDE>", "").replace("<E_ASIDE>", "")
            line = line.replace("(%HESITATION)", "UH").replace("-", "")
            line = line.replace("(%UH)", "UH").replace("(%AH)", "UH")
            line = line.replace("(", "").replace(")", "").lower()
            match = STM_LINE.search(line.strip())
            if match is None:
                raise PrepareError(f"{path}:{line_no}: not an STM line "
                                   f"'file channel speaker begin end [<label>] text': {line!r}")
            name, channel, speaker, begin, end, _, text = match.groups()
            begin, end = float(begin), float(end)
            text = FIXES.get((name, channel, round(begin * 100), round(end * 100)), text)
            utterances.append((name, channel, speaker, begin, end, text))
    return utterances


def _slice_speakers(sph: str, utterances: list[tuple], out_dir: str, min_slice: float) -> list[dict]:
    samples, rate = read_samples(sph)
    entries = []
    by_speaker: dict[str, list[tuple]] = {}
    for u in sorted(utterances, key=lambda u: (u[2], u[3])):
        by_speaker.setdefault(u[2], []).append(u)
    for speaker, items in by_speaker.items():
        count, texts, pieces, span = 0, [], [], 0.0
        for _, channel, _, begin, end, text in items:
            column = 0 if channel == "a" else 1
            if column >= samples.shape[1]:
                raise PrepareError(f"{sph}: channel {channel.upper()} of speaker {speaker} "
                                   f"missing (file has {samples.shape[1]} channel)")
            texts.append(text)
            pieces.append(samples[floor(begin * rate):ceil(end * rate), column])
            span += end - begin
            if span >= min_slice:
                count += 1
                wav = Path(out_dir) / "audio" / f"{speaker}_{count:03}.wav"
                piece = np.concatenate(pieces)
                write_wav(wav, piece, rate)
                entries.append({"audio_filepath": str(wav), "duration": len(piece) / rate,
                                "text": " ".join(texts)})
                texts, pieces, span = [], [], 0.0
    return entries


def prepare_hub5(source: str | os.PathLike, out_dir: str | os.PathLike, workers: int = 1,
                 min_slice_duration: float = 10.0) -> dict[str, Path]:
    """Write ``OUT/audio/*.wav``, ``OUT/manifest_hub5.json`` and ``OUT/vocab.txt``.

    Returns:
        {"hub5": manifest path, "vocab": vocab path}.
    """
    source, out_dir = Path(source), Path(out_dir).resolve()
    stms = sorted(source.rglob("hub5e00.english*.stm"))
    if not stms:
        raise PrepareError(f"HUB5 reference STM (hub5e00.english.000405.stm) not found under {source}")
    utterances = read_hub5_stm(stms[0])
    audio = {p.stem: p for p in source.rglob("*.sph") if p.parent.name == "english"}
    by_file: dict[str, list[tuple]] = {}
    for u in utterances:
        by_file.setdefault(u[0], []).append(u)
    missing = sorted(set(by_file) - set(audio))
    if missing:
        raise PrepareError(f"{stms[0]}: no audio hub5e_00/english/<file>.sph for {missing[:5]} "
                           f"under {source}")
    units = [(name, (str(audio[name]), by_file[name], str(out_dir), min_slice_duration))
             for name in sorted(by_file)]
    results = run_units(_slice_speakers, units, out_dir, f"hub5-{min_slice_duration:g}", workers,
                        desc="HUB5")
    entries = sorted((e for r in results.values() for e in r), key=lambda e: e["audio_filepath"])
    vocab = write_vocab(char_vocab((u[5] for u in utterances), order="sorted"),
                        out_dir / "vocab.txt")
    return {"hub5": write_entries(entries, out_dir / "manifest_hub5.json", "HUB5 2000"),
            "vocab": vocab}
