"""Fisher English (LDC2004S13/T19 Part 1, LDC2005S13/T19 Part 2): sliced NeMo manifests.

Layout (found anywhere under SOURCE, so both LDC's packages and NeMo's rearranged folders work):
audio ``.../audio/<NNN>/fe_03_NNNNN.sph`` (2 channels, 8 kHz; shorten-compressed files need
``myna[sphere]``) and transcripts ``.../trans/<NNN>/fe_03_NNNNN.txt``: two comment lines, then
``12.34 15.67 A: text``.

As NeMo's ``process_fisher_data.py`` (with ``fisher_audio_to_wav.py`` folded in: each ``.sph`` is
decoded in memory and sliced, no full-length WAV copy is written):

- lines that are blank or start with ``#`` are skipped, and lines containing ``((`` (low
  confidence) unless ``keep_low_conf``; a line with a negative or reversed time, or a channel other
  than ``A:``/``B:``, is skipped and counted;
- text: a few number words spelled out (``401k`` -> ``four o one k``, ...), lower case, ``[uh]``
  -> ``uh``, ``[um]`` -> ``um``, ``<noise>`` -> ``[noise]``, the characters ``()*;:"!&{},.-?``
  deleted, quoted words unquoted; noise tags removed (``remove_noises``) or turned into emoji
  (``noises_to_emoji``);
- per channel (A: column 0, B: column 1), utterance audio ``[floor(start*sr):ceil(end*sr)]`` and
  texts are concatenated until the summed transcript time reaches ``min_slice_duration`` (10 s),
  then written as ``OUT/<split>/<id>_<NNN>.wav``; leftovers shorter than that at the end of a file
  are dropped (logged per file at debug level);
- split by the transcript's index: the first 80 % of files train, the next 10 % val, the rest
  test; manifests ``OUT/manifest_{train,val,test}.json``.

Deliberate differences: files are taken in sorted order (NeMo's ``glob`` order depends on the file
system), the 80/10/10 cut is of the files found (NeMo's fixed 11,699 gives the same cut for the full
corpus), ``duration`` is the slice's real length (NeMo writes the summed transcript times, up to a
few samples shorter), runs of spaces in a slice's text are collapsed, and NeMo's table of
transcript fixes is not applied (its keys never match in NeMo either).
"""

from __future__ import annotations

import logging
import os
import re
from math import ceil, floor
from pathlib import Path

import numpy as np

from myna.data.prepare.common import PrepareError, read_samples, run_units, write_entries, write_wav

__all__ = ["prepare_fisher", "normalize_fisher", "fisher_line"]

logger = logging.getLogger("myna.data")

NUMBERS = {
    "401k": "four o one k", "f16": "f sixteen", "m16": "m sixteen", "ak47": "a k forty seven",
    "v8": "v eight", "y2k": "y two k", "mp3": "m p three", "vh1": "v h one",
    "90210": "nine o two one o", "espn2": "e s p n two", "u2": "u two", "dc3s": "d c threes",
    "book 2": "book two", "s2b": "s two b", "3d": "three d",
}
NOISE_TAGS = {
    "[laughter]": "\U0001F923", "[laugh]": "\U0001F923", "[noise]": "\U0001F615",
    "[sigh]": "\U0001F615", "[cough]": "\U0001F615", "[mn]": "\U0001F615",
    "[breath]": "\U0001F615", "[lipsmack]": "\U0001F615", "[[skip]]": "", "[pause]": "",
    "[sneeze]": "\U0001F615",
}
_DELETE = str.maketrans(dict.fromkeys('()*;:"!&{},.-?'))
_QUOTED = re.compile(r"'([a-z]+)'")


def normalize_fisher(text: str, remove_noises: bool = False, noises_to_emoji: bool = False) -> str:
    """NeMo's Fisher transcript normalisation of one utterance's text."""
    for word, spoken in NUMBERS.items():
        text = text.replace(word, spoken)
    text = (text.lower().replace("[uh]", "uh").replace("[um]", "um")
            .replace("<noise>", "[noise]").replace("<spoken_noise>", "[vocalized-noise]")
            .replace(".period", "period").replace(".dot", "dot").replace("-hyphen", "hyphen")
            .replace("._", " ").translate(_DELETE))
    text = _QUOTED.sub(r"\1", text)
    if remove_noises:
        for tag in NOISE_TAGS:
            text = text.replace(tag, "")
    elif noises_to_emoji:
        for tag, emoji in NOISE_TAGS.items():
            text = text.replace(tag, emoji)
    return text


def fisher_line(line: str, keep_low_conf: bool = False) -> tuple[float, float, int, str] | None:
    """(start, end, channel index, raw text) of a transcript line, or None for a skipped line.

    Raises:
        ValueError: bad times or channel (the caller names file and line).
    """
    if line.startswith("#") or not line.strip() or (not keep_low_conf and "((" in line):
        return None
    fields = line.split()
    if len(fields) < 3:
        raise ValueError("expected 'START END CHANNEL: text'")
    start, end = float(fields[0]), float(fields[1])
    if start < 0 or end < start:
        raise ValueError(f"invalid time {start} to {end}")
    if fields[2] not in ("A:", "B:"):
        raise ValueError(f"unknown channel {fields[2]!r}")
    return start, end, 0 if fields[2] == "A:" else 1, " ".join(fields[3:])


def _slice_file(transcript: str, sph: str, out_dir: str, split: str, min_slice: float,
                keep_low_conf: bool, remove_noises: bool, noises_to_emoji: bool) -> list[dict]:
    samples, rate = read_samples(sph)
    if samples.shape[1] != 2:
        raise PrepareError(f"{sph}: expected 2 channels, found {samples.shape[1]}")
    file_id = Path(transcript).stem
    texts: list[list[str]] = [[], []]
    audio: list[list[np.ndarray]] = [[], []]
    spans = [0.0, 0.0]
    entries, skipped, count = [], 0, 0
    with open(transcript, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for line_no, line in enumerate(lines[2:], start=3):
        try:
            parsed = fisher_line(line, keep_low_conf)
        except ValueError as err:
            logger.warning("%s:%d: %s; line skipped", transcript, line_no, err)
            skipped += 1
            continue
        if parsed is None:
            continue
        start, end, channel, raw = parsed
        content = normalize_fisher(raw, remove_noises, noises_to_emoji)
        if not content:
            continue
        texts[channel].append(content)
        audio[channel].append(samples[floor(start * rate):ceil(end * rate), channel])
        spans[channel] += end - start
        if spans[channel] >= min_slice:
            count += 1
            wav = Path(out_dir) / split / f"{file_id}_{count:03}.wav"
            piece = np.concatenate(audio[channel])
            write_wav(wav, piece, rate)
            entries.append({"audio_filepath": str(wav), "duration": len(piece) / rate,
                            "text": " ".join(" ".join(texts[channel]).split())})
            texts[channel], audio[channel], spans[channel] = [], [], 0.0
    if skipped:
        logger.warning("%s: %d malformed lines skipped", transcript, skipped)
    leftover = len(texts[0]) + len(texts[1])
    if leftover:
        logger.debug("%s: %d utterances at the end (< %g s per channel) dropped", transcript,
                     leftover, min_slice)
    return entries


def prepare_fisher(source: str | os.PathLike, out_dir: str | os.PathLike, workers: int = 1,
                   min_slice_duration: float = 10.0, keep_low_conf: bool = False,
                   remove_noises: bool = False, noises_to_emoji: bool = False) -> dict[str, Path]:
    """Slice Fisher conversations into ``OUT/{train,val,test}/*.wav`` and write their manifests.

    Args:
        source: folder holding the LDC packages (audio and transcripts, in any subfolders).
        out_dir: slices and ``manifest_{train,val,test}.json``.
        workers: processes, one conversation at a time each.
        min_slice_duration, keep_low_conf, remove_noises, noises_to_emoji: NeMo's options.

    Returns:
        split -> manifest path.
    """
    source, out_dir = Path(source), Path(out_dir).resolve()
    transcripts = sorted((p for p in source.rglob("fe_03_*.txt") if p.parent.parent.name == "trans"),
                         key=lambda p: p.stem)
    if not transcripts:
        raise PrepareError(f"no Fisher transcripts (.../trans/NNN/fe_03_*.txt) under {source}")
    audio = {p.stem: p for p in source.rglob("fe_03_*.sph")}
    missing = [t.stem for t in transcripts if t.stem not in audio]
    if missing:
        raise PrepareError(f"{len(missing)} Fisher transcripts have no .sph under {source}, "
                           f"e.g. {missing[:3]}")
    n = len(transcripts)
    train_end, val_end = int(n * 0.8), int(n * 0.9)
    units = []
    for i, t in enumerate(transcripts):
        split = "train" if i < train_end else "val" if i < val_end else "test"
        units.append((t.stem, (str(t), str(audio[t.stem]), str(out_dir), split, min_slice_duration,
                               keep_low_conf, remove_noises, noises_to_emoji)))
    options = f"fisher-{min_slice_duration:g}-{int(keep_low_conf)}{int(remove_noises)}" \
              f"{int(noises_to_emoji)}"
    results = run_units(_slice_file, units, out_dir, options, workers, desc="Fisher")
    written = {}
    for split in ("train", "val", "test"):
        entries = [e for name, args in units if args[3] == split for e in results[name]]
        written[split] = write_entries(entries, out_dir / f"manifest_{split}.json",
                                       f"Fisher {split}")
    return written
