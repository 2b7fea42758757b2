"""Switchboard-1 Release 2 (LDC97S62) with the Mississippi State (ms98) transcripts: manifests
with offsets into per-channel WAVs.

Layout (under SOURCE, any subfolders): audio ``swNNNNN.sph`` (``sw02001.sph``: 2 channels, 8 kHz
mu-law, shorten-compressed, so ``myna[sphere]`` is needed) and transcripts
``swb_ms98_transcriptions/NN/NNNN/swNNNN{A,B}-ms98-a-trans.text`` with lines
``sw2001A-ms98-a-0001 0.000000 0.977625 hi um yeah``.

NeMo has no Switchboard script; this follows Kaldi's ``swbd1_map_words.pl`` rules and NeMo's
manifest form. Each call becomes ``OUT/wav/swNNNNN-{A,B}.wav`` (one mono file per side); each
transcript segment is a manifest line with ``offset`` and ``duration`` into its side's file.
Text: ``[silence]`` and ``<b_aside>``/``<e_aside>`` removed; ``[laughter-word]`` -> ``word``;
``[a/b]`` -> ``a``; partial words ``-[th]at`` -> ``-at`` and ``th[at]-`` -> ``th-``;
``{word}`` -> ``word``; ``word_1`` -> ``word``; ``&`` -> `` and ``; noise tags ``[noise]``,
``[laughter]``, ``[vocalized-noise]`` kept, or removed with ``remove_noises``. Segments with no
word left are skipped (counted). Split: whole calls in sorted order go to dev until it holds
``dev_utterances`` segments (Kaldi's train_dev is the first 4000), the rest is train. Manifests
``OUT/{train,dev}.json``. The evaluation set (HUB5 2000) is prepared with ``hub5``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from myna.data.prepare.common import PrepareError, read_samples, run_units, write_entries, write_wav

__all__ = ["prepare_switchboard", "normalize_switchboard"]

logger = logging.getLogger("myna.data")

NOISES = {"[noise]", "[laughter]", "[vocalized-noise]"}
DROPPED = {"[silence]", "<b_aside>", "<e_aside>"}


def _map_word(token: str) -> str:
    token = re.sub(r"^(-?)\[laughter-(.+)\](-?)$", r"\1\2\3", token)
    token = re.sub(r"^\[(.+)/.+\](-?)$", r"\1\2", token)
    token = re.sub(r"^-?\[[^][]+\](.+)$", r"-\1", token)
    token = re.sub(r"^(.+)\[[^][]+\]-?$", r"\1-", token)
    token = re.sub(r"([^][]+)\[.+\]$", r"\1", token)
    token = re.sub(r"^\{(.+)\}$", r"\1", token)
    token = re.sub(r"([a-z])\[[^][]+\]([a-z])", r"\1-\2", token)
    return re.sub(r"_\d$", "", token)


def normalize_switchboard(text: str, remove_noises: bool = False) -> str:
    """An ms98 segment's text in Kaldi's conventions ("" when only tags are left)."""
    words = []
    for token in text.lower().split():
        if token in DROPPED or (remove_noises and token in NOISES):
            continue
        words.append(token if token in NOISES else _map_word(token))
    if all(w in NOISES for w in words):
        return ""
    return " ".join(" ".join(words).replace("&", " and ").split())


def _call(sph: str, transcripts: list[str], wav_stem: str, remove_noises: bool) -> list[dict]:
    samples, rate = read_samples(sph)
    entries, skipped = [], 0
    for side, transcript in zip("AB", transcripts):
        column = "AB".index(side)
        if column >= samples.shape[1]:
            raise PrepareError(f"{sph}: no channel {side} for {transcript}")
        wav = f"{wav_stem}-{side}.wav"
        write_wav(wav, samples[:, column], rate)
        with open(transcript, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                fields = line.split(None, 3)
                if not fields:
                    continue
                if len(fields) < 3:
                    raise PrepareError(f"{transcript}:{line_no}: expected 'ID START END text'")
                start, end = float(fields[1]), float(fields[2])
                text = normalize_switchboard(fields[3] if len(fields) > 3 else "", remove_noises)
                if not text or end <= start:
                    skipped += 1
                    continue
                entries.append({"audio_filepath": wav, "duration": round(end - start, 6),
                                "text": text, "offset": start})
    logger.debug("%s: %d segments without words skipped", sph, skipped)
    return entries


def prepare_switchboard(source: str | os.PathLike, out_dir: str | os.PathLike, workers: int = 1,
                        dev_utterances: int = 4000, remove_noises: bool = False) -> dict[str, Path]:
    """Write ``OUT/wav/*.wav`` and ``OUT/{train,dev}.json``."""
    source, out_dir = Path(source), Path(out_dir).resolve()
    texts = {p.name.split("-")[0]: p for p in source.rglob("sw*-ms98-a-trans.text")}
    audio = {p.stem: p for p in source.rglob("sw0*.sph")}
    if not texts or not audio:
        raise PrepareError(f"Switchboard needs swNNNNN.sph audio and ms98 *-trans.text transcripts "
                           f"under {source}; found {len(audio)} and {len(texts)}")
    units = []
    for call in sorted(audio):
        sides = [texts.get(f"sw{call[3:]}{side}") for side in "AB"]
        if None in sides:
            logger.warning("%s: no ms98 transcript for side %s; call skipped", audio[call],
                           "AB"[sides.index(None)])
            continue
        units.append((call, (str(audio[call]), [str(s) for s in sides],
                             str(out_dir / "wav" / call), remove_noises)))
    results = run_units(_call, units, out_dir, f"switchboard-{int(remove_noises)}", workers,
                        desc="Switchboard")
    dev, train = [], []
    for name, _ in units:
        (dev if len(dev) < dev_utterances else train).extend(results[name])
    return {"train": write_entries(train, out_dir / "train.json", "Switchboard train"),
            "dev": write_entries(dev, out_dir / "dev.json", "Switchboard dev")}
