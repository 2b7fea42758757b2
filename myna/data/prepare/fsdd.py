"""Free Spoken Digit Dataset (FSDD): NeMo manifests, and digit strings made of its clips.

FSDD holds 3,000 recordings of single English digits (6 male speakers x 10 digits x 50 takes,
8 kHz mono WAV, CC BY-SA 4.0). Its official split: takes 0-4 are test (300), takes 5-49 are
train (2,700); ``splits/{train,test}.tsv`` list them (columns utt_id, path, duration_s,
speaker, text).

:func:`prepare_fsdd` writes ``train.json``, ``dev.json`` and ``test.json``: dev is carved from
the official train split deterministically, as takes ``5 .. 5 + dev_takes - 1`` of every
(digit, speaker) pair (default 5 takes: 300 dev, 2,400 train), so dev covers every digit and
speaker evenly and never changes between runs. Test is the official test split.

:func:`make_digit_strings` joins clips with short silences into multi-digit utterances
("three one four"): real-speech sequences for Transducer training.

Command line::

    python -m myna.data.prepare.fsdd --fsdd-dir ../shared/data/fsdd --out-dir data/fsdd
    python -m myna.data.prepare.fsdd --fsdd-dir ../shared/data/fsdd --out-dir data/fsdd \\
        --strings 2000 --min-words 1 --max-words 5
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import random
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from myna.audio import audio_info, load_audio
from myna.data.manifest import ManifestEntry, read_manifest, write_manifest

__all__ = ["prepare_fsdd", "make_digit_strings", "read_fsdd_split", "main"]

logger = logging.getLogger("myna.data")

FIRST_TRAIN_TAKE = 5  # takes 0-4 are the official test split


def read_fsdd_split(fsdd_dir: str | os.PathLike, split: str) -> list[ManifestEntry]:
    """Entries of ``splits/{split}.tsv``: absolute audio path, duration measured with soundfile
    (frames / rate), text = the digit word; ``extra`` holds utt_id, speaker and take."""
    fsdd_dir = Path(fsdd_dir).resolve()
    tsv = fsdd_dir / "splits" / f"{split}.tsv"
    if not tsv.is_file():
        raise ValueError(f"FSDD split file not found: {tsv}")
    entries = []
    with open(tsv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"utt_id", "path", "speaker", "text"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{tsv}: missing columns {sorted(missing)}")
        for line_no, row in enumerate(reader, start=2):
            path = fsdd_dir / row["path"]
            info = audio_info(path)
            take = int(row["utt_id"].rsplit("_", 1)[1])
            entries.append(ManifestEntry(
                audio_filepath=str(path),
                duration=round(info.frames / info.sample_rate, 6),
                text=row["text"].strip(),
                extra={"utt_id": row["utt_id"], "speaker": row["speaker"], "take": take},
                manifest=str(tsv),
                line=line_no,
            ))
    return entries


def prepare_fsdd(fsdd_dir: str | os.PathLike, out_dir: str | os.PathLike,
                 dev_takes: int = 5) -> dict[str, Path]:
    """Write FSDD's NeMo manifests ``train.json``, ``dev.json``, ``test.json`` into ``out_dir``.

    Args:
        fsdd_dir: the FSDD folder (with ``recordings/`` and ``splits/``).
        out_dir: where the manifests go (audio paths in them are absolute; audio is not copied).
        dev_takes: takes 5 .. 5+dev_takes-1 of each (digit, speaker) go to dev (0: no dev
            manifest is written).

    Returns:
        split name -> manifest path.
    """
    if not 0 <= dev_takes < 45:
        raise ValueError(f"dev_takes must be in [0, 45), got {dev_takes}")
    out_dir = Path(out_dir)
    train_all = read_fsdd_split(fsdd_dir, "train")
    test = read_fsdd_split(fsdd_dir, "test")
    last_dev_take = FIRST_TRAIN_TAKE + dev_takes
    dev = [e for e in train_all if e.extra["take"] < last_dev_take]
    train = [e for e in train_all if e.extra["take"] >= last_dev_take]
    splits = {"train": train, "dev": dev, "test": test} if dev_takes else {"train": train,
                                                                             "test": test}
    paths = {}
    for name, entries in splits.items():
        paths[name] = write_manifest(entries, out_dir / f"{name}.json")
        logger.info("FSDD %s: %d utterances, %.3f h -> %s", name, len(entries),
                    sum(e.duration for e in entries) / 3600, paths[name])
    return paths


def make_digit_strings(
    entries: Sequence[ManifestEntry],
    out_dir: str | os.PathLike,
    n: int,
    min_words: int = 1,
    max_words: int = 5,
    seed: int = 0,
    silence: tuple[float, float] = (0.05, 0.2),
    sample_rate: int | None = None,
    manifest_name: str = "manifest.json",
    same_speaker: bool = True,
) -> list[ManifestEntry]:
    """Join random clips with short silences into ``n`` digit strings; write WAVs + manifest.

    Each string has ``k ~ U{min_words..max_words}`` clips drawn with replacement (from one
    speaker when ``same_speaker`` and entries carry ``extra["speaker"]``), separated by
    ``k - 1`` silences of ``U[silence[0], silence[1]]`` seconds (rounded to whole samples).
    No silence is added before the first or after the last clip, so the duration is exactly
    the sum of the clips and the silences. Its text is the clips' texts joined by spaces.

    Args:
        entries: source clips (e.g. FSDD's train split, for a train set of strings).
        out_dir: gets ``audio/digits_{i:05d}.wav`` (16-bit PCM) and ``manifest_name``.
        n: number of strings.
        min_words, max_words: clips per string, inclusive bounds.
        seed: everything random (clip choice, silences) follows from it.
        silence: (min, max) gap between clips, seconds.
        sample_rate: output rate; None keeps the first clip's rate (8 kHz for FSDD). Clips at
            another rate are resampled.
        manifest_name: manifest file name in ``out_dir`` (paths in it are relative to it).
        same_speaker: draw all clips of a string from one speaker.

    Returns:
        the written entries (absolute audio paths), in manifest order.
    """
    if not entries:
        raise ValueError("make_digit_strings needs at least one source clip")
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    if not 0 <= silence[0] <= silence[1]:
        raise ValueError(f"silence must be (min, max) with 0 <= min <= max, got {silence}")
    out_dir = Path(out_dir)
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    if sample_rate is None:
        sample_rate = audio_info(entries[0].audio_filepath).sample_rate
    groups: dict[str, list[ManifestEntry]] = {}
    for entry in entries:
        key = str(entry.extra.get("speaker", "")) if same_speaker else ""
        groups.setdefault(key, []).append(entry)
    speakers = sorted(groups)

    rng = random.Random(seed)
    written = []
    for i in range(n):
        pool = groups[rng.choice(speakers)]
        clips = [rng.choice(pool) for _ in range(rng.randint(min_words, max_words))]
        pieces = []
        for j, clip in enumerate(clips):
            if j > 0:
                gap = int(round(rng.uniform(*silence) * sample_rate))
                pieces.append(np.zeros(gap, dtype=np.float32))
            pieces.append(load_audio(clip.audio_filepath, sample_rate, offset=clip.offset,
                                     duration=clip.duration or None).numpy())
        audio = np.concatenate(pieces)
        path = audio_dir / f"digits_{i:05d}.wav"
        sf.write(path, audio, sample_rate, subtype="PCM_16")
        extra = {"speaker": clips[0].extra["speaker"]} if same_speaker and "speaker" in \
            clips[0].extra else {}
        written.append(ManifestEntry(
            audio_filepath=str(path.resolve()),
            duration=len(audio) / sample_rate,
            text=" ".join(c.text for c in clips),
            extra=extra,
        ))
    write_manifest(written, out_dir / manifest_name, relative_paths=True)
    logger.info("wrote %d digit strings (%.3f h) -> %s", n,
                sum(e.duration for e in written) / 3600, out_dir / manifest_name)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fsdd-dir", required=True, help="FSDD folder (recordings/, splits/)")
    parser.add_argument("--out-dir", required=True, help="folder for the manifests")
    parser.add_argument("--dev-takes", type=int, default=5)
    parser.add_argument("--strings", type=int, default=0,
                        help="also write this many train digit strings (and n/10 dev, test)")
    parser.add_argument("--min-words", type=int, default=1)
    parser.add_argument("--max-words", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = prepare_fsdd(args.fsdd_dir, args.out_dir, dev_takes=args.dev_takes)
    if args.strings:
        for k, (split, count) in enumerate(
                [("train", args.strings), ("dev", max(1, args.strings // 10)),
                 ("test", max(1, args.strings // 10))]):
            if split not in paths:
                continue
            make_digit_strings(read_manifest(paths[split]), Path(args.out_dir) / f"strings_{split}",
                               count, args.min_words, args.max_words, seed=args.seed + k,
                               manifest_name=f"{split}.json")


if __name__ == "__main__":
    main()
