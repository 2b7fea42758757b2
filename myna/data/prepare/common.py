"""What the corpus preparers share: parallel work with progress and rerun-skipping, audio reading
(SPHERE or anything soundfile reads), atomic WAV writing, manifests and character vocabularies.

Rerun rule: each unit of work (one transcript file, one recording) writes its outputs, then a small
JSON record of the manifest lines it produced under ``OUT/.prepare/<corpus>/<unit>.json``
(atomically, last). A rerun reads that record instead of redoing the unit, provided every audio
file it lists still exists with the size it had; otherwise the unit is redone. The manifests are
assembled from the records at the end, in a fixed order, so the output never depends on the
number of workers or on what a previous run had finished.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import soundfile as sf
from tqdm import tqdm

from myna.data.manifest import write_manifest
from myna.sphere import SphereError, read_sphere

__all__ = ["read_samples", "write_wav", "run_units", "write_entries", "char_vocab",
           "write_vocab", "audio_duration", "PrepareError"]

logger = logging.getLogger("myna.data")


class PrepareError(ValueError):
    """A corpus folder lacks what its layout needs, or a transcript line is malformed."""


def read_samples(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a whole audio file as (frames, channels) int16 (SPHERE here, everything else with
    soundfile), and its sample rate."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(7)
    if head == b"NIST_1A":
        samples, rate = read_sphere(path)
        if samples.dtype != np.int16:  # 4-byte PCM: keep the top 16 bits
            samples = (samples >> 16).astype(np.int16)
        return samples, rate
    try:
        samples, rate = sf.read(path, dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise SphereError(f"cannot read audio file {path}: {err}") from None
    return samples, rate


def audio_duration(path: str | os.PathLike) -> float:
    """Seconds of audio in a file soundfile reads (frames / rate, from the header)."""
    info = sf.info(str(path))
    return info.frames / info.samplerate


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> int:
    """Write 16-bit PCM WAV atomically (temp file, then rename); return its size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sf.write(tmp, samples, sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
    return path.stat().st_size


def _record_path(state_dir: Path, unit: str) -> Path:
    return state_dir / (unit.replace("/", "__") + ".json")


def _load_record(path: Path) -> list[dict] | None:
    """The manifest lines a finished unit produced, if all its files are still there intact."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    for audio, size in record.get("files", {}).items():
        try:
            if os.path.getsize(audio) != size:
                return None
        except OSError:
            return None
    return record["entries"]


def _run_one(fn: Callable[..., list[dict]], unit: str, args: tuple, record: Path) -> list[dict]:
    entries = fn(*args)
    files = {}
    for entry in entries:
        audio = entry["audio_filepath"]
        if audio not in files:
            files[audio] = os.path.getsize(audio)
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(json.dumps({"unit": unit, "files": files, "entries": entries},
                              ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, record)
    return entries


def run_units(fn: Callable[..., list[dict]], units: Sequence[tuple[str, tuple]], out_dir: Path,
              corpus: str, workers: int = 1, desc: str = "") -> dict[str, list[dict]]:
    """Run ``fn(*args)`` for each ``(name, args)`` unit, in ``workers`` processes, skipping units a
    previous run finished.

    ``fn`` must be a module-level function returning the unit's manifest lines (dicts with an
    existing ``audio_filepath``).

    Returns:
        unit name -> its manifest lines, in the order of ``units``.
    """
    state_dir = Path(out_dir) / ".prepare" / corpus
    state_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    todo = []
    for name, args in units:
        done = _load_record(_record_path(state_dir, name))
        if done is None:
            todo.append((name, args))
        else:
            results[name] = done
    if results:
        logger.info("%s: %d of %d units done by an earlier run; skipping them", corpus,
                    len(results), len(units))
    bar = tqdm(total=len(todo), desc=desc or corpus, unit="file", disable=not todo)
    if workers <= 1 or len(todo) <= 1:
        for name, args in todo:
            results[name] = _run_one(fn, name, args, _record_path(state_dir, name))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_run_one, fn, name, args, _record_path(state_dir, name)): name
                       for name, args in todo}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
    bar.close()
    return {name: results[name] for name, _ in units}


def write_entries(entries: Iterable[dict[str, Any]], path: str | os.PathLike, what: str) -> Path:
    """Write manifest lines (absolute audio paths) and log count and hours."""
    entries = list(entries)
    path = write_manifest(entries, path)
    hours = sum(e["duration"] for e in entries) / 3600
    logger.info("%s: %d utterances, %.2f h -> %s", what, len(entries), hours, path)
    return path


def char_vocab(texts: Iterable[str], order: str = "frequency") -> list[str]:
    """Characters of ``texts``: by descending count (ties in order of first appearance), or
    sorted (``order="sorted"``)."""
    counts = Counter()
    for text in texts:
        counts.update(text)
    if order == "sorted":
        return sorted(counts)
    return [c for c, _ in sorted(counts.items(), key=lambda kv: -kv[1])]


def write_vocab(chars: Sequence[str], path: str | os.PathLike) -> Path:
    """One character per line, UTF-8."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(c + "\n" for c in chars), encoding="utf-8")
    return path
