"""Mozilla Common Voice (any release and language, its tsv layout): NeMo manifests of 16 kHz WAVs.

Layout: a language folder ``cv-corpus-<version>/<lang>/`` with ``{train,dev,test,...}.tsv``
(tab-separated with a header row; columns include ``path`` and ``sentence``) and ``clips/*.mp3``.
``--source`` may be that folder or any folder above it holding exactly one such.

As NeMo's ``get_commonvoice_data.py``: each clip is converted to WAV at ``sample_rate`` (16 kHz)
with ``channels`` (1), written to ``OUT/<split>/wav/<clip name>.wav``; text = ``sentence``
lower-cased and stripped; manifests ``OUT/commonvoice_<split>_manifest.json``. The tsv is read
without quote handling (Common Voice sentences contain unbalanced quotes). Unlike NeMo, the first
data row is kept (NeMo skips it by calling ``next()`` on a ``DictReader``), and a row whose clip
is missing is skipped and counted instead of failing the run.

Downloads: Common Voice archives are behind a per-user link from the dataset page; pass it as
``download_url`` (with the SHA-256 the page shows, if any) and the archive is fetched into SOURCE
(resuming) and extracted there.
"""

from __future__ import annotations

import csv
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import soxr

from myna.data.prepare.common import PrepareError, run_units, write_entries, write_wav
from myna.data.prepare.download import download as fetch
from myna.data.prepare.download import extract

__all__ = ["prepare_common_voice", "find_language_folder"]

logger = logging.getLogger("myna.data")

CHUNK = 500  # clips per unit of work


def find_language_folder(source: Path) -> Path:
    """The folder holding ``clips/`` and the split tsv files: ``source`` or one below it."""
    if (source / "clips").is_dir():
        return source
    found = sorted({p.parent for p in source.rglob("*.tsv") if (p.parent / "clips").is_dir()})
    if len(found) != 1:
        raise PrepareError(f"expected one Common Voice language folder (tsv files + clips/) under "
                           f"{source}, found {len(found)}: {[str(f) for f in found[:5]]}")
    return found[0]


def _convert(rows: list[tuple[str, str]], clips: str, wav_dir: str, sample_rate: int,
             channels: int) -> list[dict]:
    entries = []
    for name, sentence in rows:
        src = Path(clips) / name
        if not src.is_file():
            continue
        audio, rate = sf.read(str(src), dtype="float32", always_2d=True)
        if channels == 1:
            audio = audio.mean(axis=1, keepdims=True)
        elif audio.shape[1] != channels:
            audio = np.repeat(audio[:, :1], channels, axis=1)
        if rate != sample_rate:
            audio = soxr.resample(audio, rate, sample_rate)
        wav = Path(wav_dir) / (Path(name).stem + ".wav")
        write_wav(wav, np.clip(audio, -1.0, 1.0), sample_rate)
        entries.append({"audio_filepath": str(wav), "duration": len(audio) / sample_rate,
                        "text": sentence.lower().strip()})
    return entries


def prepare_common_voice(source: str | os.PathLike, out_dir: str | os.PathLike,
                         splits: Sequence[str] = ("test", "dev", "train"), workers: int = 1,
                         sample_rate: int = 16000, channels: int = 1,
                         download_url: str | None = None,
                         sha256: str | None = None) -> dict[str, Path]:
    """Convert the clips of each split's tsv and write ``commonvoice_<split>_manifest.json``."""
    source, out_dir = Path(source), Path(out_dir).resolve()
    if download_url:
        name = download_url.split("?")[0].rstrip("/").rsplit("/", 1)[-1] or "common_voice.tar.gz"
        extract(fetch(download_url, source / name, sha256=sha256), source)
    lang = find_language_folder(source)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    written = {}
    for split in splits:
        tsv = lang / f"{split}.tsv"
        if not tsv.is_file():
            raise PrepareError(f"Common Voice split file not found: {tsv}")
        with open(tsv, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = {"path", "sentence"} - set(reader.fieldnames or ())
            if missing:
                raise PrepareError(f"{tsv}: missing columns {sorted(missing)}")
            rows = [(row["path"], row["sentence"] or "") for row in reader]
        absent = sum(not (lang / "clips" / name).is_file() for name, _ in rows)
        if absent:
            logger.warning("%s: %d of %d clips missing from %s; skipped", tsv, absent, len(rows),
                           lang / "clips")
        wav_dir = out_dir / split / "wav"
        units = [(f"{split}/{i // CHUNK:06d}", (rows[i:i + CHUNK], str(lang / "clips"),
                                                str(wav_dir), sample_rate, channels))
                 for i in range(0, len(rows), CHUNK)]
        results = run_units(_convert, units, out_dir, f"common_voice-{sample_rate}-{channels}",
                            workers, desc=f"Common Voice {split}")
        entries = [e for r in results.values() for e in r]
        written[split] = write_entries(entries, out_dir / f"commonvoice_{split}_manifest.json",
                                       f"Common Voice {split}")
    return written
