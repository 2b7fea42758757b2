"""NeMo manifests: JSON lines describing utterances.

Each non-blank line is one JSON object with at least ``audio_filepath`` and ``duration`` (seconds),
usually ``text``, optionally ``offset`` (seconds into the file) and any other keys (kept in
:attr:`ManifestEntry.extra`, written back unchanged)::

    {"audio_filepath": "audio/0001.flac", "duration": 1.52, "text": "three one four"}

A relative ``audio_filepath`` resolves against the manifest's own folder, so a corpus folder can
move as a whole; where no file is there but one is at the path as written (relative to the working
folder), that one is used, as NeMo does. A manifest may be a URL (``s3://``, ``ais://``, ...; :mod:`myna.data.stores`): it
is read from the local cache, and its relative audio paths resolve against its remote folder. Bad input is an error naming the manifest file and line; filters count and log
what they drop.

>>> entries = read_manifest("data/espeak_digits/train.json")
>>> kept, report = filter_entries(entries, min_duration=0.1, max_duration=20.0)
>>> print(report)  # doctest: +SKIP
kept 800 of 800 utterances (0.31 h); dropped nothing
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from myna.data.paths import manifest_paths
from myna.data.stores import StoreError, fetch, is_url, join_url, resolve_against, url_dirname

__all__ = [
    "ManifestEntry",
    "ManifestError",
    "FilterReport",
    "read_manifest",
    "iter_manifest",
    "count_manifest_lines",
    "filter_entries",
    "check_audio_files",
    "write_manifest",
    "manifest_paths",
]

logger = logging.getLogger("myna.data")

# Keys NeMo accepts for the audio path, first one wins.
AUDIO_KEYS = ("audio_filepath", "audio_file", "audio_filename")


class ManifestError(ValueError):
    """A manifest line is malformed, lacks a required key, or names a missing file."""


@dataclass
class ManifestEntry:
    """One utterance of a manifest.

    Attributes:
        audio_filepath: path of the audio file, resolved (relative paths joined to the
            manifest's folder; absolute paths kept as written).
        duration: seconds of audio this entry covers (from ``offset``).
        text: transcript ("" when the manifest line has none).
        offset: start of the utterance in the file, seconds.
        extra: every other key of the JSON line, unchanged.
        manifest: the manifest file the entry came from ("" if built in memory).
        line: 1-based line number in that file (0 if built in memory).
    """

    audio_filepath: str
    duration: float
    text: str = ""
    offset: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    manifest: str = ""
    line: int = 0

    @property
    def where(self) -> str:
        """``manifest:line`` for messages (or the audio path for in-memory entries)."""
        if self.manifest:
            return f"{self.manifest}:{self.line}"
        return f"<in memory> ({self.audio_filepath})"

    def to_dict(self, relative_to: str | os.PathLike | None = None,
                text_field: str = "text") -> dict[str, Any]:
        """The JSON object of this entry; ``offset`` only when non-zero.

        Args:
            relative_to: write ``audio_filepath`` relative to this folder (e.g. the folder of the
                manifest being written) when the file lies below it.
            text_field: key under which to write the transcript.
        """
        path = self.audio_filepath
        if relative_to is not None:
            path = _relative_if_below(path, relative_to)
        item: dict[str, Any] = {"audio_filepath": path, "duration": self.duration,
                                text_field: self.text}
        if self.offset:
            item["offset"] = self.offset
        for key, value in self.extra.items():
            item.setdefault(key, value)
        return item


def read_manifest(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    text_field: str = "text",
    require_text: bool = False,
) -> list[ManifestEntry]:
    """Read one or more NeMo JSON-lines manifests.

    Args:
        path: a manifest file, a comma-separated string of files, or a list of files; entries
            are returned in file order, then line order.
        text_field: key holding the transcript (NeMo's ``text_field``, default "text").
        require_text: a line without ``text_field`` is an error (otherwise its text is "").

    Returns:
        one entry per non-blank line.

    Raises:
        ManifestError: missing manifest file; a line that is not a JSON object; a missing
            ``audio_filepath`` or ``duration``; a non-numeric, non-finite or negative
            ``duration`` or ``offset``; a non-string text. The message names file and line.
    """
    try:
        paths = manifest_paths(path)
    except ValueError as err:
        raise ManifestError(str(err)) from None
    entries: list[ManifestEntry] = []
    for manifest in paths:
        entries.extend(iter_manifest(manifest, text_field, require_text))
    return entries


def iter_manifest(manifest: str | os.PathLike, text_field: str = "text",
                  require_text: bool = False) -> Iterator[ManifestEntry]:
    """The entries of one manifest file, parsed line by line as they are read (lazily).

    Every manifest reader of myna (:func:`read_manifest`, the tarred member index, the Lhotse
    NeMo source) reads through here, so every bad line is a :class:`ManifestError` naming
    ``file:line``. Arguments as :func:`read_manifest`.
    """
    path, base = _local_copy(manifest)
    name = os.fspath(manifest)
    for line_no, line in _numbered_lines(path, name):
        where = f"{name}:{line_no}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{where}: malformed JSON ({err.msg} at column {err.colno}): "
                                f"{_clip(line)}") from err
        if not isinstance(item, dict):
            raise ManifestError(f"{where}: expected a JSON object, got {_clip(line)}")
        yield _parse_item(item, base, where, text_field, require_text, name, line_no)


def count_manifest_lines(manifest: str | os.PathLike) -> int:
    """Entries (non-blank lines) of a manifest, without parsing them."""
    path, _ = _local_copy(manifest)
    return sum(1 for _ in _numbered_lines(path, os.fspath(manifest)))


def _local_copy(manifest: str | os.PathLike) -> tuple[Path, Path | str]:
    """(file to read, folder that relative audio paths join): a manifest URL is read from the local
    cache (fetched once) and its audio paths join its remote folder."""
    name = os.fspath(manifest)
    if is_url(name):
        try:
            return fetch(name), url_dirname(name)
        except StoreError as err:
            raise ManifestError(f"manifest {name}: {err}") from err
    path = Path(name)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {manifest}")
    return path, path.resolve().parent


def _numbered_lines(path: Path, name: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of each non-blank line; text that is not UTF-8 is an error
    naming the file and line."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ManifestError(f"{name}:{line_no}: not UTF-8 text ({err.reason} at byte {err.start} "
                                    f"of the line)") from None
            if line.strip():
                yield line_no, line


def _parse_item(item: dict, base: Path, where: str, text_field: str, require_text: bool,
                manifest: str, line_no: int) -> ManifestEntry:
    audio_key = next((k for k in AUDIO_KEYS if k in item), None)
    if audio_key is None:
        raise ManifestError(f"{where}: missing required key 'audio_filepath' "
                            f"(keys: {sorted(item)})")
    audio = item.pop(audio_key)
    if not isinstance(audio, str) or not audio:
        raise ManifestError(f"{where}: '{audio_key}' must be a non-empty string, got {audio!r}")
    if "duration" not in item:
        raise ManifestError(f"{where}: missing required key 'duration' ({audio})")
    duration = _seconds(item.pop("duration"), "duration", where)
    offset = item.pop("offset", None)  # absent or null: from the start, as NeMo
    offset = 0.0 if offset is None else _seconds(offset, "offset", where)
    if text_field in item:
        text = item.pop(text_field)
        if not isinstance(text, str):
            raise ManifestError(f"{where}: '{text_field}' must be a string, got {text!r}")
    elif require_text:
        raise ManifestError(f"{where}: missing transcript key '{text_field}' ({audio})")
    else:
        text = ""
    return ManifestEntry(audio_filepath=_resolve_audio_path(audio, base), duration=duration, text=text,
                         offset=offset, extra=item, manifest=manifest, line=line_no)


def _resolve_audio_path(audio: str, base: Path | str) -> str:
    """A manifest's audio path: ``~`` expanded; a relative path joined to the manifest's folder
    (a URL folder for a manifest in a store), or, as NeMo falls back, taken as written (relative
    to the working folder) when only that file exists; URLs stay as they are."""
    if is_url(audio):
        return audio
    if isinstance(base, str):
        return resolve_against(audio, join_url(base, "manifest"))
    audio_path = Path(os.path.expanduser(audio))
    if not audio_path.is_absolute():
        beside_manifest = base / audio_path
        if not beside_manifest.is_file() and audio_path.is_file():
            return str(audio_path.resolve())
        audio_path = beside_manifest
    return str(audio_path)


def _seconds(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(f"{where}: '{key}' must be a number of seconds, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ManifestError(f"{where}: '{key}' must be finite and >= 0, got {value!r}")
    return value


@dataclass
class FilterReport:
    """What :func:`filter_entries` kept and dropped.

    Attributes:
        total: entries in.
        kept: entries out.
        kept_seconds: audio seconds kept.
        dropped: reason -> (count, seconds), e.g. ``{"duration < 0.1 s": (3, 0.21)}``.
    """

    total: int = 0
    kept: int = 0
    kept_seconds: float = 0.0
    dropped: dict[str, tuple[int, float]] = field(default_factory=dict)

    @property
    def num_dropped(self) -> int:
        return sum(count for count, _ in self.dropped.values())

    def drop(self, reason: str, seconds: float) -> None:
        count, total = self.dropped.get(reason, (0, 0.0))
        self.dropped[reason] = (count + 1, total + seconds)

    def __str__(self) -> str:
        head = (f"kept {self.kept} of {self.total} utterances "
                f"({self.kept_seconds / 3600:.3f} h)")
        if not self.dropped:
            return head + "; dropped nothing"
        parts = [f"{count} with {reason} ({seconds / 3600:.3f} h)"
                 for reason, (count, seconds) in self.dropped.items()]
        return head + "; dropped " + ", ".join(parts)


def filter_entries(
    entries: Iterable[ManifestEntry],
    min_duration: float | None = None,
    max_duration: float | None = None,
    name: str = "",
) -> tuple[list[ManifestEntry], FilterReport]:
    """Drop entries outside ``[min_duration, max_duration]`` (NeMo's ``min_duration`` /
    ``max_duration``), counting and logging what each filter dropped.

    Args:
        entries: manifest entries.
        min_duration: drop entries shorter than this many seconds (None: no lower bound).
        max_duration: drop entries longer than this many seconds (None: no upper bound).
        name: label for the log line (e.g. "train_ds").

    Returns:
        (kept entries in their original order, report). The report is logged on logger
        "myna.data": WARNING when something was dropped, INFO otherwise.
    """
    if min_duration is not None and max_duration is not None and min_duration > max_duration:
        raise ValueError(f"min_duration {min_duration} > max_duration {max_duration}")
    report = FilterReport()
    kept = []
    for entry in entries:
        report.total += 1
        if min_duration is not None and entry.duration < min_duration:
            report.drop(f"duration < {min_duration} s", entry.duration)
        elif max_duration is not None and entry.duration > max_duration:
            report.drop(f"duration > {max_duration} s", entry.duration)
        else:
            kept.append(entry)
            report.kept += 1
            report.kept_seconds += entry.duration
    prefix = f"{name}: " if name else ""
    if report.dropped:
        logger.warning("%s%s", prefix, report)
    else:
        logger.info("%s%s", prefix, report)
    return kept, report


def check_audio_files(entries: Iterable[ManifestEntry], max_listed: int = 10) -> None:
    """Check that every entry's audio file exists (a cheap ``os.path.isfile`` per entry).

    Raises:
        ManifestError: listing up to ``max_listed`` missing files with their manifest line,
            and how many are missing in all.
    """
    missing = [e for e in entries if not is_url(e.audio_filepath) and not os.path.isfile(e.audio_filepath)]
    if not missing:
        return
    listed = "\n".join(f"  {e.where}: {e.audio_filepath}" for e in missing[:max_listed])
    more = f"\n  ... and {len(missing) - max_listed} more" if len(missing) > max_listed else ""
    raise ManifestError(f"{len(missing)} audio file(s) not found:\n{listed}{more}")


def write_manifest(
    entries: Iterable[ManifestEntry | Mapping[str, Any]],
    path: str | os.PathLike,
    relative_paths: bool = False,
    text_field: str = "text",
) -> Path:
    """Write entries (ManifestEntry objects or plain dicts) as NeMo JSON lines.

    Args:
        entries: what to write; a dict is written as it is (its ``audio_filepath`` made relative
            too when ``relative_paths``).
        path: manifest file (its folder is created).
        relative_paths: write audio paths below the manifest's folder relative to it, so the
            folder can move as a whole.
        text_field: key for ManifestEntry texts.

    Returns:
        the manifest path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent if relative_paths else None
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for entry in entries:
            if isinstance(entry, ManifestEntry):
                item = entry.to_dict(relative_to=base, text_field=text_field)
            else:
                item = dict(entry)
                if base is not None and "audio_filepath" in item:
                    item["audio_filepath"] = _relative_if_below(item["audio_filepath"], base)
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def _relative_if_below(path: str, folder: str | os.PathLike) -> str:
    folder = Path(folder).resolve()
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(folder).as_posix()
    except ValueError:
        return str(path)


def _clip(text: str, n: int = 120) -> str:
    text = text.strip()
    return text if len(text) <= n else text[:n] + "..."
