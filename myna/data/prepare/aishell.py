"""Aishell-1 (OpenSLR 33) and Aishell-2: NeMo manifests and character vocabularies.

**Aishell-1** layout: ``SOURCE/data_aishell/transcript/aishell_transcript_v0.8.txt`` (lines
``BAC009S0002W0122 而 对 楼市 成交 ...``) and ``SOURCE/data_aishell/wav/{train,dev,test}/<speaker>/
<id>.wav`` (the corpus ships one ``wav/<speaker>.tar.gz`` per speaker; ``download=True`` fetches
``data_aishell.tgz``, MD5-checked against OpenSLR's published value, and extracts both levels).
As NeMo's ``get_aishell_data.py``: spaces are removed from the text, files without a transcript
are skipped (counted and logged), manifests ``OUT/{train,dev,test}.json``, and ``OUT/vocab.txt``
lists the characters of all three splits by descending count.

**Aishell-2** layouts: NeMo's ``process_aishell2_data.py`` reads a rearranged folder
``SOURCE/wav/{dev,test,train}/<session>/<id>.wav`` + ``SOURCE/transcript/<split>/trans.txt``;
the corpus as distributed has per split a folder with ``trans.txt`` (``IC0001W0001<TAB>text``) and
``wav.scp`` (``IC0001W0001<TAB>wav/C0001/IC0001W0001.wav``), e.g. ``iOS/data`` (train),
``iOS/dev``, ``iOS/test``: either is accepted. Text: the line's tokens after the id, joined by
single spaces, upper-cased; a WAV without a transcript is an error naming both files (NeMo's
KeyError); manifests ``OUT/{dev,test,train}.json``; ``OUT/vocab.txt`` lists the characters of the
train transcripts by descending count.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from myna.data.prepare.common import (PrepareError, audio_duration, char_vocab, run_units,
                                      write_entries, write_vocab)
from myna.data.prepare.download import download as fetch
from myna.data.prepare.download import extract

__all__ = ["prepare_aishell1", "prepare_aishell2", "AISHELL1_URL", "AISHELL1_MD5"]

logger = logging.getLogger("myna.data")

AISHELL1_URL = "https://www.openslr.org/resources/33/data_aishell.tgz"
AISHELL1_MD5 = "2f494334227864a8a8fec932999db9d8"
SPLITS = ("train", "dev", "test")


def _durations(items: list[tuple[str, str]]) -> list[dict]:
    """Manifest lines for (wav path, text) pairs, durations from the WAV headers."""
    return [{"audio_filepath": path, "duration": audio_duration(path), "text": text}
            for path, text in items]


def _read_transcripts(path: Path, join: str, upper: bool) -> dict[str, str]:
    table = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.strip().split()
            if not fields:
                continue
            if len(fields) < 2:
                logger.warning("%s:%d: no text for %s", path, line_no, fields[0])
            text = join.join(fields[1:])
            table[fields[0]] = text.upper() if upper else text
    return table


def prepare_aishell1(source: str | os.PathLike, out_dir: str | os.PathLike, workers: int = 1,
                     download: bool = False, url: str = AISHELL1_URL) -> dict[str, Path]:
    """Write Aishell-1's ``OUT/{train,dev,test}.json`` and ``OUT/vocab.txt``.

    Args:
        source: folder holding ``data_aishell/`` (the archive is downloaded and extracted here).
        out_dir: manifests and vocabulary.
        workers: processes reading WAV headers (one speaker folder each).
        download: fetch ``data_aishell.tgz`` from ``url`` (an OpenSLR mirror) and extract it.
    """
    source, out_dir = Path(source), Path(out_dir)
    root = source / "data_aishell"
    if download:
        extract(fetch(url, source / "data_aishell.tgz", md5=AISHELL1_MD5), source)
        for inner in sorted((root / "wav").glob("*.tar.gz")):
            extract(inner, root / "wav")
    transcript = root / "transcript" / "aishell_transcript_v0.8.txt"
    if not transcript.is_file():
        raise PrepareError(f"Aishell-1 transcript not found: {transcript} (use --download, or point "
                           f"--source at the folder holding data_aishell/)")
    if any((root / "wav").glob("*.tar.gz")) and not (root / "wav" / "train").is_dir():
        raise PrepareError(f"{root / 'wav'} holds the per-speaker .tar.gz archives, not extracted "
                           f"(rerun with --download to extract them)")
    texts = _read_transcripts(transcript, join="", upper=False)
    units, skipped = [], 0
    for split in SPLITS:
        for speaker in sorted(p for p in (root / "wav" / split).glob("*") if p.is_dir()):
            items = []
            for wav in sorted(speaker.glob("*.wav")):
                if wav.stem in texts:
                    items.append((str(wav.resolve()), texts[wav.stem]))
                else:
                    skipped += 1
            units.append((f"{split}/{speaker.name}", (items,)))
    if skipped:
        logger.warning("Aishell-1: %d WAV files have no transcript; skipped (as NeMo does)", skipped)
    results = run_units(_durations, units, out_dir, "aishell1", workers, desc="Aishell-1")
    written, all_texts = {}, []
    for split in SPLITS:
        entries = [e for name, _ in units if name.startswith(split + "/") for e in results[name]]
        if not entries:
            raise PrepareError(f"Aishell-1 {split}: no transcribed WAV files under "
                               f"{root / 'wav' / split}")
        all_texts.extend(e["text"] for e in entries)
        written[split] = write_entries(entries, out_dir / f"{split}.json", f"Aishell-1 {split}")
    written["vocab"] = write_vocab(char_vocab(all_texts), out_dir / "vocab.txt")
    return written


def _aishell2_splits(source: Path) -> dict[str, list[tuple[Path, Path]]]:
    """split -> [(wav, transcript file)] for NeMo's layout or the distributed one."""
    found: dict[str, list[tuple[Path, Path]]] = {}
    if (source / "transcript").is_dir():
        for split in ("dev", "test", "train"):
            trans = source / "transcript" / split / "trans.txt"
            if trans.is_file():
                found[split] = [(w, trans) for w in sorted((source / "wav" / split).glob("*/*.wav"))]
        return found
    for trans in sorted(source.rglob("trans.txt")):
        scp = trans.with_name("wav.scp")
        if not scp.is_file():
            continue
        split = {"data": "train"}.get(trans.parent.name, trans.parent.name)
        wavs = []
        for line in scp.read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if len(fields) >= 2:
                wavs.append((trans.parent / fields[1], trans))
        found.setdefault(split, []).extend(wavs)
    return found


def prepare_aishell2(source: str | os.PathLike, out_dir: str | os.PathLike,
                     workers: int = 1) -> dict[str, Path]:
    """Write Aishell-2's ``OUT/{dev,test,train}.json`` and ``OUT/vocab.txt`` (train characters)."""
    source, out_dir = Path(source), Path(out_dir)
    splits = _aishell2_splits(source)
    if "train" not in splits:
        raise PrepareError(f"no Aishell-2 train split under {source} (expected "
                           f"transcript/train/trans.txt + wav/train/, or a data/ folder with "
                           f"trans.txt and wav.scp)")
    tables: dict[Path, dict[str, str]] = {}
    units = []
    for split in ("dev", "test", "train"):
        items = []
        for wav, trans in splits.get(split, []):
            if trans not in tables:
                tables[trans] = _read_transcripts(trans, join=" ", upper=True)
            if wav.stem not in tables[trans]:
                raise PrepareError(f"{wav}: no transcript for {wav.stem} in {trans}")
            if not wav.is_file():
                raise PrepareError(f"{trans.with_name('wav.scp')}: {wav} not found")
            items.append((str(wav.resolve()), tables[trans][wav.stem]))
        for start in range(0, len(items), 2000):
            units.append((f"{split}/{start // 2000:05d}", (items[start:start + 2000],)))
    results = run_units(_durations, units, out_dir, "aishell2", workers, desc="Aishell-2")
    written, train_texts = {}, []
    for split in ("dev", "test", "train"):
        if split not in splits:
            continue
        entries = [e for name, _ in units if name.startswith(split + "/") for e in results[name]]
        if split == "train":
            train_texts = [e["text"] for e in entries]
        written[split] = write_entries(entries, out_dir / f"{split}.json", f"Aishell-2 {split}")
    written["vocab"] = write_vocab(char_vocab(train_texts), out_dir / "vocab.txt")
    return written
