"""NeMo's waveform ``augmentor`` for dataset sections: perturbations applied as audio is read.

A dataset section may carry NeMo's mapping of perturbation name -> settings, each with its
probability ``prob``; they run in the order written, each with its own coin flip::

    augmentor:
      random_segment: {prob: 1.0, duration_sec: 4.0}   # a random 4 s window (longer audio only)
      speed: {prob: 0.3, sr: 16000, resample_type: kaiser_fast, min_speed_rate: 0.9, max_speed_rate: 1.1}
      white_noise: {prob: 0.5, min_level: -90, max_level: -46}
      gain: {prob: 0.5, min_gain_dbfs: -10, max_gain_dbfs: 10}
      shift: {prob: 0.5, min_shift_ms: -5.0, max_shift_ms: 5.0}

Semantics are NeMo's (``perturb.py``): speed resamples by a rate picked from ``num_rates`` evenly
spaced values (uniformly when ``num_rates < 0``), so the audio gets ``rate`` times as many
samples; white noise at a level drawn in whole dB from ``[min_level, max_level)``; gain in dB
uniform; shift moves the samples by a uniform number of ms and zero-fills; random_segment cuts a
uniformly placed ``duration_sec`` window (``pad_to_duration`` pads shorter audio, optional
``min_rms_db`` retries quiet windows). Resampling uses soxr whatever ``resample_type`` says.

Training sections only: evaluation reads audio unperturbed. Each loader worker draws from its own
generator, seeded from the worker's torch seed (which the run seed and the epoch decide), so runs
repeat and workers differ.
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Mapping, Optional

import numpy as np
import soxr
import torch

__all__ = ["WaveformAugmentor", "build_augmentor", "PERTURBATIONS"]


def _speed(audio: np.ndarray, rate: int, rng: random.Random, *, sr: Optional[int] = None,
           resample_type: str = "kaiser_best", min_speed_rate: float = 0.9, max_speed_rate: float = 1.1,
           num_rates: int = 5) -> np.ndarray:
    if num_rates < 0:
        speed = rng.uniform(min_speed_rate, max_speed_rate)
    else:
        speed = rng.choice(list(np.linspace(min_speed_rate, max_speed_rate, num_rates, endpoint=True)))
    if speed == 1.0:
        return audio
    source = sr or rate
    return soxr.resample(audio, source, int(source * speed), quality="HQ").astype(np.float32)


def _white_noise(audio: np.ndarray, rate: int, rng: random.Random, *, min_level: int = -90,
                 max_level: int = -46) -> np.ndarray:
    level = rng.randrange(int(min_level), int(max_level))
    noise = np.random.default_rng(rng.getrandbits(63)).standard_normal(audio.shape[0])
    return (audio + noise * 10.0 ** (level / 20.0)).astype(np.float32)


def _gain(audio: np.ndarray, rate: int, rng: random.Random, *, min_gain_dbfs: float = -10,
          max_gain_dbfs: float = 10) -> np.ndarray:
    return (audio * 10.0 ** (rng.uniform(min_gain_dbfs, max_gain_dbfs) / 20.0)).astype(np.float32)


def _shift(audio: np.ndarray, rate: int, rng: random.Random, *, min_shift_ms: float = -5.0,
           max_shift_ms: float = 5.0) -> np.ndarray:
    shift_ms = rng.uniform(min_shift_ms, max_shift_ms)
    limit = audio.shape[0] / rate * 1000
    shift_ms = max(-limit, min(shift_ms, limit))
    n = int(shift_ms * rate // 1000)
    out = np.zeros_like(audio)
    if n < 0:
        out[-n:] = audio[:n]
    elif n > 0:
        out[:-n] = audio[n:]
    else:
        return audio
    return out


def _random_segment(audio: np.ndarray, rate: int, rng: random.Random, *, duration_sec: float = 32.0,
                    pad_to_duration: bool = False, min_rms_db: Optional[float] = None, max_trials: int = 10,
                    verbose: bool = False) -> np.ndarray:
    size = int(round(duration_sec * rate))
    if size >= audio.shape[0]:
        return np.pad(audio, (0, size - audio.shape[0])) if pad_to_duration else audio

    def window() -> np.ndarray:
        start = int(rng.uniform(0.0, (audio.shape[0] - size) / rate) * rate)
        return audio[start:start + size]

    segment = window()
    for _ in range(max_trials if min_rms_db is not None else 0):
        rms = float(np.sqrt(np.mean(segment.astype(np.float64) ** 2)))
        if 20 * math.log10(max(rms, 1e-20)) >= min_rms_db:
            break
        segment = window()
    return segment


PERTURBATIONS: dict[str, Callable[..., np.ndarray]] = {
    "speed": _speed, "white_noise": _white_noise, "gain": _gain, "shift": _shift, "random_segment": _random_segment,
}
_KEYS = {"speed": {"sr", "resample_type", "min_speed_rate", "max_speed_rate", "num_rates"},
         "white_noise": {"min_level", "max_level"}, "gain": {"min_gain_dbfs", "max_gain_dbfs"},
         "shift": {"min_shift_ms", "max_shift_ms"},
         "random_segment": {"duration_sec", "pad_to_duration", "min_rms_db", "max_trials", "verbose"}}


class WaveformAugmentor:
    """An ordered list of (probability, perturbation, settings), applied to a waveform.

    :param pipeline: ``[(prob, name, settings)]``, names from :data:`PERTURBATIONS`.
    """

    def __init__(self, pipeline: list[tuple[float, str, dict]]) -> None:
        self.pipeline = pipeline
        self._rng: Optional[random.Random] = None
        self._seed: Optional[int] = None

    def generator(self) -> random.Random:
        """This process' generator, (re)seeded from torch's seed of the process or loader worker."""
        seed = torch.initial_seed()
        if self._rng is None or seed != self._seed:
            self._rng, self._seed = random.Random(seed), seed
        return self._rng

    def __call__(self, audio: torch.Tensor, sample_rate: int, rng: Optional[random.Random] = None) -> torch.Tensor:
        """:param audio: (L,) float32. :param sample_rate: its rate. :return: (L',) float32 perturbed."""
        rng = rng or self.generator()
        samples = audio.numpy().astype(np.float32, copy=True)
        for prob, name, settings in self.pipeline:
            if rng.random() < prob:
                samples = PERTURBATIONS[name](samples, sample_rate, rng, **settings)
        return torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))


def build_augmentor(section: Optional[Mapping[str, Any]], where: str) -> Optional[WaveformAugmentor]:
    """A :class:`WaveformAugmentor` from NeMo's ``augmentor`` mapping, or None when empty.

    :param where: the config path for messages (``model.train_ds.augmentor``).
    :raises ValueError: an unknown perturbation or key, a missing or bad ``prob``, naming it.
    """
    if not section:
        return None
    pipeline = []
    for name, settings in section.items():
        if name not in PERTURBATIONS:
            raise ValueError(f"{where}.{name}: unknown perturbation; supported: {sorted(PERTURBATIONS)}")
        settings = dict(settings or {})
        prob = settings.pop("prob", None)
        if prob is None or not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"{where}.{name}.prob must be a probability in [0, 1], got {prob!r}")
        unknown = sorted(set(settings) - _KEYS[name])
        if unknown:
            raise ValueError(f"{where}.{name}.{unknown[0]}: unknown key (known: prob, {', '.join(sorted(_KEYS[name]))})")
        if name == "random_segment" and float(settings.get("duration_sec", 32.0)) <= 0:
            raise ValueError(f"{where}.random_segment.duration_sec must be > 0")
        if name == "speed" and float(settings.get("min_speed_rate", 0.9)) <= 0:
            raise ValueError(f"{where}.speed.min_speed_rate must be > 0")
        pipeline.append((float(prob), name, settings))
    return WaveformAugmentor(pipeline)
