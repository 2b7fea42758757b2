"""The one place audio is decoded: a file or the bytes of a tar member, a segment, mono, resampled.

Every reader in myna goes through :func:`load_audio`: manifest entries, tar shard members (their
bytes, read from the stream), NeMo-sourced Lhotse cuts, files given to ``transcribe``. It reads
with soundfile (WAV, FLAC, OGG, anything libsndfile knows), reads only the frames of the requested
``[offset, offset + duration)`` segment, averages the channels and resamples with soxr when the
source's rate differs from the requested one. NIST SPHERE files that libsndfile cannot open
(shorten-compressed, as LDC ships Fisher, Switchboard and HUB5) are decoded by :mod:`myna.sphere`. Audio decoded elsewhere (Lhotse's own recordings)
joins the same tail through :func:`to_mono_at_rate`.

>>> audio = load_audio("utt.flac", sample_rate=16000, offset=1.5, duration=2.0)
>>> audio.shape, audio.dtype
(torch.Size([32000]), torch.float32)
>>> member = load_audio(member_bytes, 16000, name="audio_3.tar member utt.flac")
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from typing import Union

import numpy as np
import soundfile as sf
import soxr
import torch

__all__ = ["AudioError", "AudioInfo", "AudioSource", "audio_info", "load_audio", "to_mono_at_rate",
           "SEGMENT_TOLERANCE"]

# A segment may end up to this many seconds past the end of the file: manifests round durations
# (NeMo writes 2-3 decimals), so `offset + duration` often overshoots the last frame slightly.
# The read is clipped to the file; a larger overshoot is an error.
SEGMENT_TOLERANCE = 0.05

AudioSource = Union[str, os.PathLike, bytes]
"""A file path, or the whole encoded file in memory (e.g. a tar member's bytes)."""


class AudioError(ValueError):
    """An audio file is missing, empty, unreadable, or a segment lies outside it."""


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file (no samples read)."""

    path: str
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def audio_info(source: AudioSource, name: str | None = None) -> AudioInfo:
    """Read an audio file's header: sample rate, frame count, channels.

    Args:
        source: a file path, or the encoded file's bytes.
        name: what messages call the source (default: the path, or "<bytes>").

    Raises:
        AudioError: the file is missing or libsndfile cannot open it.
    """
    name = _name_of(source, name)
    with _open(_local(source, name), name) as f:
        return _info(f, name)


def load_audio(
    source: AudioSource,
    sample_rate: int,
    offset: float = 0.0,
    duration: float | None = None,
    name: str | None = None,
) -> torch.Tensor:
    """Decode (a segment of) an audio file as a mono float32 waveform at ``sample_rate``.

    Only the frames of the segment are read (seek, then read), never the whole file. The segment
    is ``[offset, offset + duration)`` seconds in the file's own time line; ``duration=None``
    reads to the end. A segment that ends at most :data:`SEGMENT_TOLERANCE` seconds past the end
    of the file is clipped to it.

    Args:
        source: an audio file path (any format libsndfile reads), or the bytes of such a file
            (a tar member), decoded in memory.
        sample_rate: wanted rate in Hz; the audio is resampled with soxr (quality "HQ") when its
            own rate differs.
        offset: start of the segment in seconds, ``>= 0``.
        duration: length of the segment in seconds (``> 0``), or None for "to the end".
        name: what messages call the source (default: the path; give the shard and member for
            bytes).

    Returns:
        waveform (samples,) float32, channels averaged; samples ~= round(seconds * sample_rate).

    Raises:
        AudioError: the source is missing, unreadable, has no samples, or the segment lies
            (partly) outside it. The message names the source.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    name = _name_of(source, name)
    source = _local(source, name)
    if _is_compressed_sphere(source):
        samples, info = _read_sphere(source, name)
        start, stop = _checked_segment(info, offset, duration)
        return to_mono_at_rate(samples[start:stop], info.sample_rate, sample_rate)  # integer samples: finite
    with _open(source, name) as f:
        info = _info(f, name)
        start, stop = _checked_segment(info, offset, duration)
        try:
            if start > 0:
                f.seek(start)
            frames = f.read(stop - start, dtype="float32", always_2d=True)  # (n, channels)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(f"cannot read audio file {name}: {err}") from err
    if frames.shape[0] == 0:
        raise AudioError(f"read 0 samples from {name} (offset {offset} s, duration {duration} s)")
    _check_finite(frames, name)
    return to_mono_at_rate(frames, info.sample_rate, sample_rate)


def _check_finite(frames: np.ndarray, name: str) -> None:
    """AudioError when float samples hold NaN or inf (a float WAV can; integer PCM cannot).

    One sum over the samples decides for clean audio (the sum of finite samples in [-1, 1] stays
    finite); only a non-finite sum pays for counting the bad samples.
    """
    if math.isfinite(float(frames.sum(dtype=np.float64))):
        return
    bad = int(frames.size - np.count_nonzero(np.isfinite(frames)))
    raise AudioError(f"audio file {name} has {bad} NaN/inf sample(s) of {frames.size}")


def _is_compressed_sphere(source: AudioSource) -> bool:
    """True for a shorten-compressed SPHERE file, which libsndfile cannot decode (it reads plain
    SPHERE itself). Paths are checked only when named ``*.sph``, so other files cost nothing."""
    if isinstance(source, (bytes, bytearray)):
        head = bytes(source[:1024])
    elif os.fspath(source).lower().endswith(".sph"):
        try:
            with open(source, "rb") as handle:
                head = handle.read(1024)
        except OSError:
            return False  # _open names the problem
    else:
        return False
    return head.startswith(b"NIST_1A") and b"shorten" in head


def _read_sphere(source: AudioSource, name: str) -> tuple[np.ndarray, AudioInfo]:
    """Decode a whole compressed SPHERE file: (samples, channels) float32 in [-1, 1), and its info."""
    from myna.sphere import SphereError, read_sphere

    try:
        samples, rate = read_sphere(bytes(source) if isinstance(source, (bytes, bytearray)) else source)
    except SphereError as err:
        raise AudioError(f"cannot read audio file {name}: {err}") from None
    scale = float(np.iinfo(samples.dtype).max) + 1.0
    info = AudioInfo(path=name, sample_rate=rate, frames=int(samples.shape[0]), channels=int(samples.shape[1]))
    return samples.astype(np.float32) / scale, info


def to_mono_at_rate(frames: np.ndarray, rate: int, sample_rate: int) -> torch.Tensor:
    """Average the channels and resample: the tail every decoder shares.

    Args:
        frames: (samples, channels) or (samples,) float array at ``rate`` Hz.
        rate: the frames' rate in Hz.
        sample_rate: wanted rate in Hz (soxr "HQ" when it differs from ``rate``).

    Returns:
        waveform (samples',) float32 at ``sample_rate``.
    """
    frames = np.asarray(frames, dtype=np.float32)
    audio = frames if frames.ndim == 1 else (frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0])
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate, quality="HQ")
    return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))


def _name_of(source: AudioSource, name: str | None) -> str:
    if name is not None:
        return name
    return "<bytes>" if isinstance(source, (bytes, bytearray)) else os.fspath(source)


def _local(source: AudioSource, name: str) -> AudioSource:
    """The source itself, or for the URL of an object in a store (``s3://``, ``ais://``, ...) its
    locally cached copy (fetched once, see :mod:`myna.data.stores`)."""
    if isinstance(source, (bytes, bytearray)) or "://" not in os.fspath(source):
        return source
    from myna.data.stores import StoreError, fetch, is_url

    if not is_url(os.fspath(source)):
        return source
    try:
        return str(fetch(os.fspath(source)))
    except StoreError as err:
        raise AudioError(f"cannot read audio {name}: {err}") from err


def _open(source: AudioSource, name: str) -> sf.SoundFile:
    """A SoundFile over a path or in-memory bytes; AudioError naming ``name`` when it cannot open."""
    if isinstance(source, (bytes, bytearray)):
        target: object = io.BytesIO(source)
    else:
        target = os.fspath(source)
        if not os.path.exists(target):
            raise AudioError(f"audio file not found: {name}")
        if os.path.isdir(target):
            raise AudioError(f"audio path is a directory, not a file: {name}")
    try:
        return sf.SoundFile(target)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(f"cannot read audio file {name}: {err}") from err


def _info(f: sf.SoundFile, name: str) -> AudioInfo:
    return AudioInfo(path=name, sample_rate=int(f.samplerate), frames=int(f.frames), channels=int(f.channels))


def _checked_segment(info: AudioInfo, offset: float, duration: float | None) -> tuple[int, int]:
    """Frame range [start, stop) of a segment, checked against the file's length."""
    if info.frames <= 0:
        raise AudioError(f"audio file {info.path} is empty (0 samples)")
    if not math.isfinite(offset) or offset < 0:
        raise AudioError(f"offset {offset} s is invalid for {info.path}")
    if duration is not None and (not math.isfinite(duration) or duration <= 0):
        raise AudioError(f"duration {duration} s is invalid for {info.path} (must be > 0)")
    start = int(round(offset * info.sample_rate))
    if start >= info.frames:
        raise AudioError(
            f"segment offset {offset} s is at or past the end of {info.path} "
            f"({info.duration:.3f} s)"
        )
    if duration is None:
        return start, info.frames
    end_time = offset + duration
    if end_time > info.duration + SEGMENT_TOLERANCE:
        raise AudioError(
            f"segment [{offset}, {end_time:.3f}] s ends past the end of {info.path} "
            f"({info.duration:.3f} s)"
        )
    stop = min(info.frames, start + int(round(duration * info.sample_rate)))
    return start, max(stop, start + 1)
