"""LibriSpeech (OpenSLR 12; mini LibriSpeech, OpenSLR 31): NeMo manifests from the corpus folder.

Layout: ``SOURCE/LibriSpeech/<set-with-dashes>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt``
beside ``<speaker>-<chapter>-NNNN.flac``; a transcript line is ``ID TEXT`` (upper case).

As NeMo's ``get_librispeech_data.py``: text = everything after the first space, lower-cased and
stripped; manifest ``OUT/<set_with_underscores>.json`` with absolute paths; ``--data-sets`` takes a
comma list, ``ALL`` (the seven sets) or ``mini`` (dev_clean_2, train_clean_5). Durations are the
files' frame counts over their rate. Unlike NeMo, the FLAC files are used as they are (myna decodes
FLAC; NeMo's sox copy to WAV doubles the disk): ``audio_format="wav"`` writes NeMo's
``LibriSpeech/<set>-processed/<id>.wav`` copies under OUT instead. When the three training sets
are all prepared in OUT, ``train_960.json`` (their concatenation) is written too.

``download=True`` fetches each set's archive from OpenSLR (resuming, MD5-checked against the values
OpenSLR publishes in its md5sum.txt) into SOURCE and extracts it there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import soundfile as sf

from myna.data.prepare.common import PrepareError, run_units, write_entries, write_wav
from myna.data.prepare.download import download as fetch
from myna.data.prepare.download import extract

__all__ = ["prepare_librispeech", "LIBRISPEECH_SETS", "OPENSLR_URL"]

logger = logging.getLogger("myna.data")

OPENSLR_URL = "https://www.openslr.org/resources"

# set -> (OpenSLR resource number, MD5 of <set-with-dashes>.tar.gz from OpenSLR's md5sum.txt)
LIBRISPEECH_SETS = {
    "dev_clean": ("12", "42e2234ba48799c1f50f24a7926300a1"),
    "dev_other": ("12", "c8d0bcc9cca99d4f8b62fcc847357931"),
    "test_clean": ("12", "32fa31d27d2e1cad72775fee3f4849a9"),
    "test_other": ("12", "fb5a50374b501bb3bac4815ee91d3135"),
    "train_clean_100": ("12", "2a93770f6d5c6c964bc36631d331a522"),
    "train_clean_360": ("12", "c0e676e450a7ff2f54aeade5171606fa"),
    "train_other_500": ("12", "d1a0fd59409feb2c614ce4d30c387708"),
    "dev_clean_2": ("31", "6d7ab67ac6a1d2c993d050e16d61080d"),
    "train_clean_5": ("31", "5df7d4e78065366204ca6845bb08f490"),
}
ALL = ("dev_clean", "dev_other", "train_clean_100", "train_clean_360", "train_other_500",
       "test_clean", "test_other")
MINI = ("dev_clean_2", "train_clean_5")
TRAIN_960 = ("train_clean_100", "train_clean_360", "train_other_500")


def parse_data_sets(data_sets: str | Sequence[str]) -> list[str]:
    """``ALL``, ``mini``, a comma list or a list of set names (dashes or underscores)."""
    if isinstance(data_sets, str):
        if data_sets == "ALL":
            return list(ALL)
        if data_sets == "mini":
            return list(MINI)
        data_sets = data_sets.split(",")
    names = [s.strip().replace("-", "_") for s in data_sets if s.strip()]
    unknown = [s for s in names if s not in LIBRISPEECH_SETS]
    if unknown:
        raise ValueError(f"unknown LibriSpeech set(s) {unknown}; known: "
                         f"{', '.join(LIBRISPEECH_SETS)}, ALL, mini")
    return names


def _chapter(transcript: str, wav_dir: str | None) -> list[dict]:
    """Manifest lines of one ``*.trans.txt`` (converting to WAV when ``wav_dir``)."""
    folder = Path(transcript).parent
    entries = []
    with open(transcript, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if " " not in line.strip():
                raise PrepareError(f"{transcript}:{line_no}: expected 'ID TEXT', got {line!r}")
            utt_id, text = line[:line.index(" ")], line[line.index(" ") + 1:]
            flac = folder / f"{utt_id}.flac"
            if not flac.is_file():
                raise PrepareError(f"{transcript}:{line_no}: audio {flac} not found")
            if wav_dir is None:
                info = sf.info(str(flac))
                path, duration = flac, info.frames / info.samplerate
            else:
                samples, rate = sf.read(str(flac), dtype="int16")
                path = Path(wav_dir) / f"{utt_id}.wav"
                write_wav(path, samples, rate)
                duration = len(samples) / rate
            entries.append({"audio_filepath": str(Path(path).resolve()), "duration": duration,
                            "text": text.lower().strip()})
    return entries


def prepare_librispeech(source: str | os.PathLike, out_dir: str | os.PathLike,
                        data_sets: str | Sequence[str] = "dev_clean", workers: int = 1,
                        download: bool = False, audio_format: str = "flac",
                        base_url: str = OPENSLR_URL) -> dict[str, Path]:
    """Write ``OUT/<set>.json`` for each LibriSpeech set (see the module docstring).

    Args:
        source: folder holding ``LibriSpeech/`` (archives are downloaded and extracted here).
        out_dir: manifests (and WAV copies when ``audio_format="wav"``).
        data_sets: which sets.
        workers: processes reading/converting chapters.
        download: fetch and extract missing sets from ``base_url`` (an OpenSLR mirror).
        audio_format: "flac" (use the corpus files) or "wav" (NeMo's converted copies).

    Returns:
        manifest name (set, or "train_960") -> path.
    """
    if audio_format not in ("flac", "wav"):
        raise ValueError(f"audio_format must be 'flac' or 'wav', got {audio_format!r}")
    source, out_dir = Path(source), Path(out_dir)
    written = {}
    for name in parse_data_sets(data_sets):
        dashed = name.replace("_", "-")
        set_dir = source / "LibriSpeech" / dashed
        if download:
            slr, md5 = LIBRISPEECH_SETS[name]
            archive = fetch(f"{base_url.rstrip('/')}/{slr}/{dashed}.tar.gz",
                            source / f"{dashed}.tar.gz", md5=md5)
            extract(archive, source)
        if not set_dir.is_dir():
            raise PrepareError(f"LibriSpeech set {dashed} not found: {set_dir} (download it with "
                               f"--download, or point --source at the folder holding LibriSpeech/)")
        transcripts = sorted(set_dir.rglob("*.trans.txt"))
        if not transcripts:
            raise PrepareError(f"no *.trans.txt files under {set_dir}")
        wav_dir = (out_dir / "LibriSpeech" / f"{dashed}-processed").resolve() \
            if audio_format == "wav" else None
        units = [(f"{name}/{t.name}", (str(t), str(wav_dir) if wav_dir else None))
                 for t in transcripts]
        results = run_units(_chapter, units, out_dir, f"librispeech-{audio_format}", workers,
                            desc=f"LibriSpeech {dashed}")
        entries = [e for unit in results.values() for e in unit]
        written[name] = write_entries(entries, out_dir / f"{name}.json", f"LibriSpeech {dashed}")
    if all((out_dir / f"{s}.json").is_file() for s in TRAIN_960):
        lines = [line for s in TRAIN_960
                 for line in (out_dir / f"{s}.json").read_text(encoding="utf-8").splitlines()]
        tmp = out_dir / "train_960.json.tmp"
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, out_dir / "train_960.json")
        written["train_960"] = out_dir / "train_960.json"
        logger.info("train_960: %d utterances -> %s", len(lines), written["train_960"])
    return written
