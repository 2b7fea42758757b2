"""AN4 (CMU census database): NeMo manifests from ``an4_sphere.tar.gz``'s folder.

Layout: ``SOURCE/an4/wav/{an4_clstk,an4test_clstk}/<speaker>/<utt>-<speaker>-b.sph`` and
``SOURCE/an4/etc/an4_{train,test}.transcription`` with lines ``<s> YES </s> (an251-fash-b)``
(the ``<s>``/``</s>`` tags are optional).

As NeMo's ``process_an4_data.py``: every ``.sph`` becomes a 16-bit WAV (here under
``OUT/wav/<same folders>``, where NeMo writes beside the ``.sph``); text = the line up to one
character before ``(``, lower-cased, tags removed, stripped; the utterance id is between the
parentheses and its WAV is ``<set folder>/<id between its first and last '-'>/<id>.wav``;
manifests ``OUT/train_manifest.json`` (948) and ``OUT/test_manifest.json`` (130).

``download=True`` fetches ``an4_sphere.tar.gz`` (the copy NeMo's tutorials use) into SOURCE and
extracts it there. CMU publishes no checksum; the SHA-256 below is the archive as that mirror
serves it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from myna.data.prepare.common import (PrepareError, audio_duration, read_samples, run_units,
                                      write_entries, write_wav)
from myna.data.prepare.download import download as fetch
from myna.data.prepare.download import extract

__all__ = ["prepare_an4", "AN4_URL", "AN4_SHA256", "an4_line"]

logger = logging.getLogger("myna.data")

AN4_URL = "https://dldata-public.s3.us-east-2.amazonaws.com/an4_sphere.tar.gz"
AN4_SHA256 = "a0525579493735d32b60fb6fa5975dd0eaacde087b0a4eeb7f13b7ef33077b12"
SPLITS = {"train": ("an4_train.transcription", "an4_clstk"),
          "test": ("an4_test.transcription", "an4test_clstk")}


def an4_line(line: str) -> tuple[str, str]:
    """(utterance id, text) of a transcription line, by NeMo's rule."""
    open_at, close_at = line.find("("), line.rfind(")")
    if open_at < 1 or close_at < open_at:
        raise ValueError("expected 'TEXT (utterance-id)'")
    text = line[:open_at - 1].lower().replace("<s>", "").replace("</s>", "").strip()
    return line[open_at + 1:close_at], text


def _convert_speaker(sph_files: list[str], wav_files: list[str]) -> list[dict]:
    entries = []
    for sph, wav in zip(sph_files, wav_files):
        samples, rate = read_samples(sph)
        write_wav(wav, samples, rate)
        entries.append({"audio_filepath": wav, "duration": len(samples) / rate, "text": ""})
    return entries


def prepare_an4(source: str | os.PathLike, out_dir: str | os.PathLike, workers: int = 1,
                download: bool = False, url: str = AN4_URL) -> dict[str, Path]:
    """Convert AN4's SPHERE files to WAV and write ``train_manifest.json``, ``test_manifest.json``.

    Args:
        source: folder holding ``an4/`` (the archive is downloaded and extracted here).
        out_dir: WAVs (``OUT/wav/...``) and manifests.
        workers: processes converting speakers' files.
        download: fetch and extract the archive first (``url``: a mirror of ``AN4_URL``).

    Returns:
        split ("train", "test") -> manifest path.
    """
    source, out_dir = Path(source), Path(out_dir).resolve()
    if download:
        extract(fetch(url, source / "an4_sphere.tar.gz", sha256=AN4_SHA256), source)
    wav_root = source / "an4" / "wav"
    if not wav_root.is_dir():
        raise PrepareError(f"AN4 not found: {wav_root} (use --download, or point --source at the "
                           f"folder holding an4/)")
    by_speaker: dict[str, list[Path]] = {}
    for sph in sorted(wav_root.rglob("*.sph")):
        by_speaker.setdefault(str(sph.parent.relative_to(wav_root)), []).append(sph)
    units = []
    for speaker_dir, files in by_speaker.items():
        wavs = [str(out_dir / "wav" / f.relative_to(wav_root).with_suffix(".wav")) for f in files]
        units.append((speaker_dir, ([str(f) for f in files], wavs)))
    run_units(_convert_speaker, units, out_dir, "an4", workers, desc="AN4 sph -> wav")
    written = {}
    for split, (transcription, set_dir) in SPLITS.items():
        path = source / "an4" / "etc" / transcription
        if not path.is_file():
            raise PrepareError(f"AN4 transcription file not found: {path}")
        entries = []
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                utt_id, text = an4_line(line)
            except ValueError as err:
                raise PrepareError(f"{path}:{line_no}: {err}: {line!r}") from None
            speaker = utt_id[utt_id.find("-") + 1:utt_id.rfind("-")]
            wav = out_dir / "wav" / set_dir / speaker / f"{utt_id}.wav"
            if not wav.is_file():
                raise PrepareError(f"{path}:{line_no}: no audio for {utt_id} (expected "
                                   f"{wav_root / set_dir / speaker / utt_id}.sph)")
            entries.append({"audio_filepath": str(wav), "duration": audio_duration(wav),
                            "text": text})
        written[split] = write_entries(entries, out_dir / f"{split}_manifest.json", f"AN4 {split}")
    return written
