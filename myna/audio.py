"""Read audio files: mono mix-down, resampling and (offset, duration) segments.

Every reader in myna goes through :func:`load_audio`. It reads with soundfile (WAV, FLAC, OGG,
anything libsndfile knows), averages the channels, resamples with soxr when the file's rate differs
from the requested one, and reads only the frames of the requested segment.

>>> audio = load_audio("utt.flac", sample_rate=16000, offset=1.5, duration=2.0)
>>> audio.shape, audio.dtype
(torch.Size([32000]), torch.float32)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

__all__ = ["AudioError", "AudioInfo", "audio_info", "load_audio", "SEGMENT_TOLERANCE"]

# A segment may end up to this many seconds past the end of the file: manifests round durations
# (NeMo writes 2-3 decimals), so `offset + duration` often overshoots the last frame slightly.
# The read is clipped to the file; a larger overshoot is an error.
SEGMENT_TOLERANCE = 0.05


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


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read an audio file's header: sample rate, frame count, channels.

    Raises:
        AudioError: the file is missing or libsndfile cannot open it.
    """
    path = _check_exists(path)
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"cannot read audio file {path}: {err}") from err
    return AudioInfo(path=path, sample_rate=int(info.samplerate), frames=int(info.frames),
                     channels=int(info.channels))


def load_audio(
    path: str | os.PathLike,
    sample_rate: int,
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """Read (a segment of) an audio file as a mono float32 waveform at ``sample_rate``.

    Only the frames of the segment are read (seek, then read), never the whole file. The segment
    is ``[offset, offset + duration)`` seconds in the file's own time line; ``duration=None``
    reads to the end. A segment that ends at most :data:`SEGMENT_TOLERANCE` seconds past the end
    of the file is clipped to it.

    Args:
        path: audio file (any format libsndfile reads).
        sample_rate: wanted rate in Hz; the file is resampled with soxr (quality "HQ") when its
            own rate differs.
        offset: start of the segment in seconds, ``>= 0``.
        duration: length of the segment in seconds (``> 0``), or None for "to the end".

    Returns:
        waveform (samples,) float32, channels averaged; samples ~= round(seconds * sample_rate).

    Raises:
        AudioError: the file is missing, unreadable, has no samples, or the segment lies (partly)
            outside it. The message names the file.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    info = audio_info(path)
    path = info.path
    if info.frames <= 0:
        raise AudioError(f"audio file {path} is empty (0 samples)")
    if not math.isfinite(offset) or offset < 0:
        raise AudioError(f"offset {offset} s is invalid for {path}")
    if duration is not None and (not math.isfinite(duration) or duration <= 0):
        raise AudioError(f"duration {duration} s is invalid for {path} (must be > 0)")

    start, stop = _segment_frames(info, offset, duration)
    try:
        with sf.SoundFile(path) as f:
            if start > 0:
                f.seek(start)
            frames = f.read(stop - start, dtype="float32", always_2d=True)  # (n, channels)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"cannot read audio file {path}: {err}") from err
    if frames.shape[0] == 0:
        raise AudioError(f"read 0 samples from {path} (offset {offset} s, duration {duration} s)")

    audio = frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
    if info.sample_rate != sample_rate:
        audio = soxr.resample(audio, info.sample_rate, sample_rate, quality="HQ")
    return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))


def _check_exists(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"audio file not found: {path}")
    if os.path.isdir(path):
        raise AudioError(f"audio path is a directory, not a file: {path}")
    return path


def _segment_frames(info: AudioInfo, offset: float, duration: float | None) -> tuple[int, int]:
    """Frame range [start, stop) of a segment, checked against the file's length."""
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
