"""Pre-flight check of NeMo manifests: every file there, every header readable, durations true.

Run before the first training step (:func:`preflight`) and by ``myna data check MANIFEST``. Each
entry is checked from its header only (no samples decoded), in parallel processes over chunks of
lines, so a LibriSpeech-sized manifest (280k lines) takes seconds:

- the audio file exists and its header decodes (libsndfile; NIST SPHERE headers read directly),
- ``duration`` agrees with the file within ``tolerance`` seconds (with an ``offset``: the segment
  ends inside the file), or is absent (filled in by ``--fix-durations``),
- the text is non-empty.

Problems are counted by kind, the first offenders named as ``manifest:line: path (detail)``.
Remote entries (``s3://`` ...) are counted as not checked; their bytes are not fetched here.

>>> report = check_manifests(["train.json"], tolerance=0.1)
>>> print(report.summary())  # doctest: +SKIP
train.json: 281241 entries checked in 6.1 s (8 processes): all good
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Iterable, Sequence

import soundfile as sf

__all__ = ["CheckReport", "Problem", "check_manifests", "write_fixed_manifest", "PROBLEM_KINDS"]

# Kinds of problem, in report order; "no duration" is fixable by filling in the header's length.
PROBLEM_KINDS = ("malformed line", "missing file", "unreadable header", "empty audio", "duration mismatch",
                 "no duration", "empty text")
_AUDIO_KEYS = ("audio_filepath", "audio_file", "audio_filename")
_CHUNK_LINES = 4000
_SMALL_MANIFEST_BYTES = 4 << 20  # below this, checking in this process is faster than starting workers


@dataclass(frozen=True)
class Problem:
    kind: str
    where: str  # manifest:line
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.detail}"


@dataclass
class CheckReport:
    """What :func:`check_manifests` found.

    Attributes:
        entries: manifest entries seen.
        counts: problem kind -> number of entries.
        examples: the first ``max_listed`` problems of each kind.
        remote: entries whose audio is a URL (not checked).
        seconds: audio seconds according to the headers (segments: their duration).
        fixes: per manifest, {line: the audio's duration} for each entry whose duration is absent
            or beyond the tolerance (what ``--fix-durations`` writes).
        wall_s: how long the check took.
        workers: processes used.
    """

    manifests: list[str] = field(default_factory=list)
    entries: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[Problem]] = field(default_factory=dict)
    remote: int = 0
    seconds: float = 0.0
    fixes: dict[str, dict[int, float]] = field(default_factory=dict)
    wall_s: float = 0.0
    workers: int = 1

    @property
    def ok(self) -> bool:
        return not self.counts

    def blocking(self, allow: Iterable[str] = ()) -> dict[str, int]:
        """The problem counts except the kinds in ``allow``."""
        allow = set(allow)
        return {k: n for k, n in self.counts.items() if k not in allow}

    def summary(self, max_listed: int = 5) -> str:
        """Counts, then the first offenders of each kind (one per line)."""
        names = ", ".join(self.manifests)
        head = (f"{names}: {self.entries} entries ({self.seconds / 3600:.2f} h) checked in {self.wall_s:.1f} s "
                f"({self.workers} process{'es' if self.workers != 1 else ''})")
        if self.remote:
            head += f"; {self.remote} remote entries not checked"
        if self.ok:
            return head + ": all good"
        counts = ", ".join(f"{self.counts[k]} {k}" for k in PROBLEM_KINDS if k in self.counts)
        lines = [f"{head}: {counts}"]
        for kind in PROBLEM_KINDS:
            shown = self.examples.get(kind, [])[:max_listed]
            lines.extend(f"  {p}" for p in shown)
            if self.counts.get(kind, 0) > len(shown):
                lines.append(f"  ... and {self.counts[kind] - len(shown)} more {kind}")
        return "\n".join(lines)


def _fast_header_duration(path: str) -> float | None:
    """Seconds of a FLAC (STREAMINFO) or plain RIFF/WAVE file from its first bytes; None when the
    file is anything else or its header leaves the length open (libsndfile then decides)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:4] == b"fLaC" and len(head) >= 42 and head[4] & 0x7F == 0:  # first block: STREAMINFO
        info = int.from_bytes(head[18:26], "big")  # rate:20 channels-1:3 bits-1:5 total samples:36
        rate, total = info >> 44, info & ((1 << 36) - 1)
        return total / rate if rate and total else None
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        pos, block_align, rate = 12, 0, 0
        while pos + 8 <= len(head):
            chunk, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
            if chunk == b"fmt " and pos + 22 <= len(head):
                rate = int.from_bytes(head[pos + 12:pos + 16], "little")
                block_align = int.from_bytes(head[pos + 20:pos + 22], "little")
                fmt = int.from_bytes(head[pos + 8:pos + 10], "little")
                if fmt not in (1, 3, 0xFFFE):  # PCM, float, extensible; compressed: libsndfile
                    return None
            elif chunk == b"data":
                if not rate or not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align / rate
            pos += 8 + size + (size & 1)
    return None


def _header_duration(path: str) -> float:
    """Seconds of audio in ``path`` from its header; raises OSError/RuntimeError when unreadable."""
    fast = _fast_header_duration(path)
    if fast is not None:
        return fast
    try:
        with sf.SoundFile(path) as f:
            return f.frames / f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        if not path.lower().endswith(".sph"):
            raise
    # Shorten-compressed NIST SPHERE, which libsndfile cannot open: its text header has the length.
    with open(path, "rb") as handle:
        head = handle.read(1024).decode("ascii", "replace")
    fields = dict(line.split(" ", 1) for line in head.splitlines() if line.count(" ") >= 2)
    try:
        count = int(fields["sample_count"].split()[-1])
        rate = int(fields["sample_rate"].split()[-1])
    except (KeyError, ValueError):
        raise RuntimeError("not a NIST SPHERE header with sample_count and sample_rate") from None
    return count / rate


def _resolve(audio: str, base: str) -> str:
    """As :func:`myna.data.manifest._resolve_audio_path` for local manifests: beside the manifest,
    else as written (NeMo's fallback)."""
    path = os.path.expanduser(audio)
    if os.path.isabs(path):
        return path
    beside = os.path.join(base, path)
    if not os.path.isfile(beside) and os.path.isfile(path):
        return os.path.abspath(path)
    return beside


def _check_chunk(args: tuple) -> tuple[int, list[tuple[str, int, str]], dict[int, float], float, int]:
    """Check lines [(line_no, raw bytes)] of one manifest. Returns (entries, problems as (kind, line,
    detail), {line: header duration} for absent or mismatched durations, audio seconds, remote entries)."""
    lines, base, text_field, tolerance = args
    problems: list[tuple[str, int, str]] = []
    fixes: dict[int, float] = {}
    seconds, remote = 0.0, 0
    for line_no, raw in lines:
        try:
            item = json.loads(raw)
            if not isinstance(item, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as err:
            problems.append(("malformed line", line_no, str(err)[:120]))
            continue
        audio = next((item[k] for k in _AUDIO_KEYS if k in item), None)
        if not isinstance(audio, str) or not audio:
            problems.append(("malformed line", line_no, "no audio_filepath"))
            continue
        text = item.get(text_field)
        if not isinstance(text, str) or not text.strip():
            problems.append(("empty text", line_no, f"{audio} ({text_field}={text!r})"))
        if "://" in audio:
            remote += 1
            continue
        path = _resolve(audio, base)
        try:
            file_seconds = _header_duration(path)
        except (OSError, RuntimeError, TypeError, ValueError, sf.LibsndfileError) as err:
            if not os.path.exists(path):
                problems.append(("missing file", line_no, path))
            else:
                problems.append(("unreadable header", line_no, f"{path} ({err})"))
            continue
        offset = item.get("offset") or 0.0
        duration = item.get("duration")
        if file_seconds <= 0:
            problems.append(("empty audio", line_no, path))
        available = max(file_seconds - offset, 0.0)
        if duration is None:
            problems.append(("no duration", line_no, f"{path} (audio: {available:.3f} s)"))
            fixes[line_no] = available
            seconds += available
            continue
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration):
            problems.append(("malformed line", line_no, f"duration {duration!r} is not a number"))
            continue
        # A whole-file entry must match the file's length; a segment (offset given) must end inside it.
        whole_file = "offset" not in item
        if (abs(duration - file_seconds) if whole_file else duration - available) > tolerance:
            problems.append(("duration mismatch", line_no,
                             f"{path}: manifest {duration:.3f} s, audio {available:.3f} s"))
            fixes[line_no] = available if whole_file else min(duration, available)
        seconds += duration
    return len(lines), problems, fixes, seconds, remote


def _chunks(path: Path) -> Iterable[list[tuple[int, bytes]]]:
    chunk: list[tuple[int, bytes]] = []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if raw.strip():
                chunk.append((line_no, raw))
                if len(chunk) == _CHUNK_LINES:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


def default_workers() -> int:
    """Processes for the check: the CPUs this process may use, at most 16."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(16, cpus))


def check_manifests(manifests: Sequence[str | os.PathLike], text_field: str = "text", tolerance: float = 0.1,
                    workers: int | None = None, max_listed: int = 10) -> CheckReport:
    """Check local manifests (see the module doc); URLs of manifests are not checked here.

    Args:
        manifests: manifest files.
        text_field: the transcript's key.
        tolerance: seconds a manifest duration may differ from the header's.
        workers: processes (default: one for manifests under 4 MiB, else :func:`default_workers`);
            1 checks in this process.
        max_listed: offenders kept per kind.

    Raises:
        FileNotFoundError: a manifest does not exist.
    """
    start = time.perf_counter()
    if not workers:  # a small manifest is checked faster here than by starting processes
        size = sum(Path(m).stat().st_size for m in manifests if Path(m).is_file())
        workers = 1 if size < _SMALL_MANIFEST_BYTES else default_workers()
    report = CheckReport(manifests=[os.fspath(m) for m in manifests], workers=workers)
    pool = None
    if workers > 1:
        # fork where there is one, as PyTorch's DataLoader workers do: spawn would re-import the caller's
        # __main__ (a user script without a main guard would run again); the workers touch no torch state.
        method = "fork" if "fork" in get_all_start_methods() else "spawn"
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context(method))
    try:
        for manifest in manifests:
            path = Path(manifest)
            if not path.is_file():
                raise FileNotFoundError(f"manifest not found: {manifest}")
            base = str(path.resolve().parent)
            jobs = ((chunk, base, text_field, tolerance) for chunk in _chunks(path))
            results = pool.map(_check_chunk, jobs) if pool else map(_check_chunk, jobs)
            fixes = report.fixes.setdefault(os.fspath(manifest), {})
            for entries, problems, chunk_fixes, seconds, remote in results:
                report.entries += entries
                report.seconds += seconds
                report.remote += remote
                fixes.update(chunk_fixes)
                for kind, line_no, detail in problems:
                    report.counts[kind] = report.counts.get(kind, 0) + 1
                    listed = report.examples.setdefault(kind, [])
                    if len(listed) < max_listed:
                        listed.append(Problem(kind, f"{manifest}:{line_no}", detail))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    report.wall_s = time.perf_counter() - start
    return report


def write_fixed_manifest(manifest: str | os.PathLike, fixes: dict[int, float], out: str | os.PathLike,
                         drop: Iterable[int] = ()) -> Path:
    """Write ``manifest`` to ``out`` with the durations of ``fixes`` ({line: seconds}, from
    :attr:`CheckReport.fixes`) set; lines numbered in ``drop`` are left out. Relative audio paths are
    rewritten to stay valid from ``out``'s folder; every other key is kept as it was."""
    manifest, out = Path(manifest), Path(out)
    base = str(manifest.resolve().parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    out_base = str(out.resolve().parent)
    drop = set(drop)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as dst:
        for chunk in _chunks(manifest):
            for line_no, raw in chunk:
                if line_no in drop:
                    continue
                item = json.loads(raw)
                if line_no in fixes:
                    item["duration"] = round(fixes[line_no], 6)
                key = next((k for k in _AUDIO_KEYS if k in item), None)
                audio = item.get(key) if key else None
                if (isinstance(audio, str) and "://" not in audio and not os.path.isabs(os.path.expanduser(audio))
                        and out_base != base):
                    item[key] = os.path.relpath(_resolve(audio, base), out_base)
                dst.write(json.dumps(item, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    return out


# Kinds that stop training before its first step (the rest are reported only).
BLOCKING_KINDS = ("malformed line", "missing file", "unreadable header", "empty audio", "duration mismatch",
                  "no duration")


def preflight(model_cfg, data_check, sections=("train_ds", "validation_ds", "test_ds")) -> list[CheckReport]:
    """Check the local manifests of each dataset section of ``model_cfg`` before training starts.

    Sections whose audio is in tar shards or Lhotse Shar are skipped (their members are checked as
    they are read); manifests given as URLs too. ``data_check`` holds ``enabled``,
    ``duration_tolerance`` (s), ``workers`` (null: one per CPU, at most 16) and ``action``
    (``error``: stop on a blocking problem; ``warn``: report and go on).

    Raises:
        ValueError: with the report, when a blocking problem is found and the action is ``error``.
    """
    import logging

    from myna.data.paths import bucketed_manifest_paths, manifest_paths, weighted_manifest_paths
    from myna.data.stores import is_url

    log = logging.getLogger("myna.data")
    if not data_check.get("enabled", True):
        return []
    reports, failures = [], []
    for name in sections:
        ds = model_cfg.get(name)
        if ds is None or not ds.get("manifest_filepath") or ds.get("is_tarred") or ds.get("shar_path"):
            continue
        try:
            listed = manifest_paths(ds.manifest_filepath)
        except ValueError:  # bucketed ([[b1.json], [b2.json]]) or weighted ([[a.json, 0.7], ...]) lists
            try:
                listed = [p for group in bucketed_manifest_paths(ds.manifest_filepath) for p in group]
            except ValueError:
                listed = [p for p, _ in weighted_manifest_paths(ds.manifest_filepath)]
        paths = [p for p in listed if not is_url(str(p))]
        if not paths:
            continue
        report = check_manifests(paths, text_field=ds.get("text_field") or "text",
                                 tolerance=float(data_check.get("duration_tolerance", 0.1)),
                                 workers=data_check.get("workers"))
        reports.append(report)
        blocking = report.blocking(allow=[k for k in PROBLEM_KINDS if k not in BLOCKING_KINDS])
        text = f"data check {name}: {report.summary()}"
        if blocking:
            failures.append(text)
        elif report.ok:
            log.info("%s", text)
        else:
            log.warning("%s", text)
    if failures:
        hint = ("\nFix the manifest (`myna data check MANIFEST --fix-durations --out FIXED.json` rewrites durations), "
                "or set data_check.action=warn to train anyway.")
        if data_check.get("action", "error") == "error":
            raise ValueError("\n".join(failures) + hint)
        for text in failures:
            log.warning("%s", text)
    return reports
