"""TED-LIUM release 3 (OpenSLR 51), legacy distribution: NeMo manifests with offsets.

Layout: ``SOURCE/legacy/{train,dev,test}/sph/<talk>.sph`` (16 kHz mono PCM SPHERE) and
``.../stm/<talk>.stm`` with lines ``talk 1 speaker start end <o,f0,male> text`` (SOURCE may also
be the folder above ``TEDLIUM_release-3``).

NeMo has no TED-LIUM script; this follows the Kaldi/icefall recipe's text rules and NeMo's manifest
form: each talk is converted once to ``OUT/wav/<split>/<talk>.wav`` and each STM segment is a
manifest line with ``offset`` and ``duration`` into it (no sliced copies). Segments whose text is
``ignore_time_segment_in_scoring`` are skipped; text: ``[...]`` noise tokens and ``<unk>`` removed,
apostrophe suffixes joined (``they 're`` -> ``they're``, ``' cause`` -> ``'cause``), spaces
collapsed, lower case; segments left empty are skipped (both counts logged). Manifests
``OUT/{train,dev,test}.json``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from myna.data.prepare.common import PrepareError, read_samples, run_units, write_entries, write_wav

__all__ = ["prepare_tedlium", "normalize_tedlium"]

logger = logging.getLogger("myna.data")


def normalize_tedlium(text: str) -> str:
    """Kaldi's TED-LIUM text rules, lower case."""
    text = re.sub(r"\[[^\]]+\]|\{[^}]+\}|<unk>", " ", text.lower())
    text = re.sub(r"(\w+) '(\w+)", r"\1'\2", text)
    text = re.sub(r"' (\w+)", r"'\1", text)
    return " ".join(text.split())


def _talk(sph: str, stm: str, wav: str) -> list[dict]:
    samples, rate = read_samples(sph)
    write_wav(wav, samples[:, :1], rate)
    total = len(samples) / rate
    entries, ignored, empty = [], 0, 0
    with open(stm, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip() or line.startswith(";;"):
                continue
            fields = line.split()
            if len(fields) < 6:
                raise PrepareError(f"{stm}:{line_no}: expected 'talk channel speaker start end "
                                   f"<label> text', got {line!r}")
            start, end = float(fields[3]), min(float(fields[4]), total)
            words = fields[6:] if fields[5].startswith("<") else fields[5:]
            raw = " ".join(words)
            if raw == "ignore_time_segment_in_scoring":
                ignored += 1
                continue
            text = normalize_tedlium(raw)
            if not text or end <= start:
                empty += 1
                continue
            entries.append({"audio_filepath": wav, "duration": round(end - start, 3),
                            "text": text, "offset": start})
    if ignored or empty:
        logger.info("%s: %d ignore_time_segment_in_scoring and %d empty segments skipped", stm,
                    ignored, empty)
    return entries


def prepare_tedlium(source: str | os.PathLike, out_dir: str | os.PathLike, workers: int = 1,
                    splits=("train", "dev", "test")) -> dict[str, Path]:
    """Write ``OUT/{train,dev,test}.json`` (entries with offset into per-talk WAVs)."""
    source, out_dir = Path(source), Path(out_dir).resolve()
    legacy = source / "legacy"
    if not legacy.is_dir() and (source / "TEDLIUM_release-3" / "legacy").is_dir():
        legacy = source / "TEDLIUM_release-3" / "legacy"
    written = {}
    for split in splits:
        stm_dir, sph_dir = legacy / split / "stm", legacy / split / "sph"
        stms = sorted(stm_dir.glob("*.stm"))
        if not stms:
            raise PrepareError(f"TED-LIUM 3 {split}: no STM files in {stm_dir}")
        units = []
        for stm in stms:
            sph = sph_dir / f"{stm.stem}.sph"
            if not sph.is_file():
                raise PrepareError(f"{stm}: audio {sph} not found")
            units.append((f"{split}/{stm.stem}", (str(sph), str(stm),
                                                  str(out_dir / "wav" / split / f"{stm.stem}.wav"))))
        results = run_units(_talk, units, out_dir, "tedlium", workers, desc=f"TED-LIUM {split}")
        entries = [e for r in results.values() for e in r]
        written[split] = write_entries(entries, out_dir / f"{split}.json", f"TED-LIUM 3 {split}")
    return written
