"""Text -> speech for training on text-only data (hybrid ASR-TTS, as NeMo's ``ASRWithTTSModel``).

A TTS *backend* is any plain callable ``backend(text) -> waveform``: a 1-D float array (or tensor)
at ``backend.sample_rate`` Hz, or a ``(waveform, sample_rate)`` pair. A backend whose call takes
a ``speaker`` keyword gets NeMo's speaker id (an int from ``speakers_filepath``), so a neural
multi-speaker TTS plugs in unchanged. :class:`Synthesizer` puts a backend behind the data loader:
it resamples to the model's rate and caches each utterance's audio on disk, so every text-only
record is synthesised once.

The bundled backend, :class:`EspeakTTS`, runs espeak-ng (the Debian package ``espeak-ng``) the way
the bundled digit corpus was made (:mod:`myna.data.prepare.espeak_digits`): an English voice with
a voice variant, a speaking rate, a pitch and a word gap drawn per utterance, then trimmed to a
short margin of silence, resampled and levelled (:func:`shape_utterance`). The draw is seeded by
the utterance's key, so the same record always gets the same voice (and the cache holds).

>>> tts = Synthesizer(EspeakTTS(seed=1), sample_rate=16000, cache_dir="exp/tts_cache")
>>> audio = tts("three one four", key="text.json:12")   # (samples,) float32 at 16 kHz
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import random
import shutil
import subprocess
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import soundfile as sf
import soxr
import torch

__all__ = [
    "TTSError",
    "EspeakTTS",
    "Synthesizer",
    "run_espeak",
    "shape_utterance",
    "espeak_available",
    "ENGLISH_VOICES",
    "VOICE_VARIANTS",
    "speaker_ids",
    "TTS_BACKENDS",
    "register_tts_backend",
    "build_synthesizer",
]

logger = logging.getLogger("myna.data")

# espeak-ng's own English voices (no mbrola needed) and its voice variants.
ENGLISH_VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-us-nyc")
VOICE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")


class TTSError(RuntimeError):
    """A TTS backend failed or returned no audio; the message names the text."""


def espeak_available(executable: str = "espeak-ng") -> bool:
    """Whether the espeak-ng program is on PATH."""
    return shutil.which(executable) is not None


def run_espeak(text: str, voice: str, wpm: int, pitch: int, word_gap: int,
               executable: str = "espeak-ng") -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng.

    Args:
        text: what to say.
        voice: espeak voice with optional variant, e.g. ``en-us+f3``.
        wpm: speed, words per minute (``-s``).
        pitch: 0-99 (``-p``).
        word_gap: extra pause between words in 10 ms units (``-g``).

    Returns:
        (waveform (samples,) float32 mono, sample rate in Hz) as espeak-ng wrote it (22.05 kHz).

    Raises:
        TTSError: espeak-ng is missing or failed, naming the command.
    """
    if shutil.which(executable) is None:
        raise TTSError(f"{executable} not found: install it (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory(prefix="myna_espeak_") as tmp:
        wav = Path(tmp) / "utt.wav"
        cmd = [executable, "-v", voice, "-s", str(wpm), "-p", str(pitch), "-g", str(word_gap), "-w", str(wav),
               "--", text]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0 or not wav.is_file():
            raise TTSError(f"espeak-ng failed ({' '.join(cmd)}): {run.stderr.strip()}")
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(rate)


def shape_utterance(audio: np.ndarray, rate: int, before: float, after: float, peak: float,
                    sample_rate: int, bits: int | None = None) -> np.ndarray:
    """Trim synthetic speech to its voiced part plus margins, resample, level and quantize.

    Args:
        audio: (samples,) float waveform at ``rate``.
        rate: its sample rate in Hz.
        before, after: seconds of silence kept before the first and after the last sample above
            -40 dB re the peak.
        peak: peak amplitude of the result (0 < peak <= 1).
        sample_rate: output rate (soxr "HQ").
        bits: round samples to a ``bits``-bit grid on [-1, 1) (None: no quantization).

    Returns:
        (samples',) float32.

    Raises:
        TTSError: the audio is silent.
    """
    audio = np.asarray(audio, dtype=np.float32)
    top = float(np.abs(audio).max()) if audio.size else 0.0
    if top == 0:
        raise TTSError("the TTS backend returned silence")
    loud = np.nonzero(np.abs(audio) > top * 0.01)[0]  # -40 dB re peak
    n_before, n_after = int(before * rate), int(after * rate)
    audio = np.pad(audio, (n_before, n_after))[loud[0]: loud[-1] + 1 + n_before + n_after]
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate, quality="HQ")
    audio = audio * (peak / np.abs(audio).max())
    if bits is not None:
        step = 2.0 ** (1 - bits)
        audio = np.clip(np.round(audio / step) * step, -1.0, 1.0 - step)
    return audio.astype(np.float32)


@dataclass(frozen=True)
class EspeakTTS:
    """espeak-ng with a voice, variant, rate, pitch, word gap, margins and level drawn per utterance.

    Call it as ``tts(text, speaker=None, key=None)``. The draw is seeded by ``(seed, key)`` (key
    defaults to the text), so it is the same for the same utterance on every call; ``speaker``
    (an int, e.g. from NeMo's ``speakers_filepath``) picks the voice and variant instead of the draw.

    Attributes:
        voices, variants: espeak-ng voices and variants to draw from (every pair is a speaker).
        wpm, pitch, word_gap, peak, margin: (low, high) ranges drawn uniformly, as in
            :class:`myna.data.prepare.espeak_digits.Settings`.
        sample_rate: output rate in Hz.
        seed: base seed of the draws.
        executable: the espeak-ng program.
    """

    voices: tuple[str, ...] = ENGLISH_VOICES[:5]
    variants: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3")
    wpm: tuple[int, int] = (120, 220)
    pitch: tuple[int, int] = (20, 80)
    word_gap: tuple[int, int] = (0, 3)
    peak: tuple[float, float] = (0.25, 0.9)
    margin: tuple[float, float] = (0.05, 0.15)
    sample_rate: int = 16000
    seed: int = 0
    executable: str = "espeak-ng"

    @property
    def speakers(self) -> list[str]:
        """The voice+variant of each speaker id."""
        return [f"{v}+{x}" for v in self.voices for x in self.variants]

    def draw(self, key: str, speaker: int | None = None) -> dict[str, Any]:
        """The espeak-ng parameters of one utterance (deterministic in seed, key and speaker)."""
        digest = hashlib.sha256(f"{self.seed}\0{key}".encode("utf-8")).digest()
        rng = random.Random(int.from_bytes(digest[:8], "little"))
        voices = self.speakers
        voice = voices[speaker % len(voices)] if speaker is not None else rng.choice(voices)
        return {"voice": voice, "wpm": rng.randint(*self.wpm), "pitch": rng.randint(*self.pitch),
                "word_gap": rng.randint(*self.word_gap), "before": rng.uniform(*self.margin),
                "after": rng.uniform(*self.margin), "peak": rng.uniform(*self.peak)}

    def cache_key(self, text: str, speaker: int | None = None, key: str | None = None) -> str:
        """Everything the audio depends on, as text (the Synthesizer hashes it)."""
        return repr(("espeak-ng", asdict(self), self.draw(key or text, speaker), text))

    def __call__(self, text: str, speaker: int | None = None, key: str | None = None) -> np.ndarray:
        """(samples,) float32 at :attr:`sample_rate`."""
        params = self.draw(key or text, speaker)
        audio, rate = run_espeak(text, params["voice"], params["wpm"], params["pitch"], params["word_gap"],
                                 self.executable)
        return shape_utterance(audio, rate, params["before"], params["after"], params["peak"], self.sample_rate)


class Synthesizer:
    """A TTS backend behind the data loader: resampling to the model's rate and a disk cache.

    Args:
        backend: ``backend(text) -> waveform`` (see the module docstring); ``speaker`` and ``key``
            keywords are passed when its signature takes them.
        sample_rate: rate of the returned audio (the model's).
        cache_dir: one FLAC file per utterance under this folder (None: no cache). The file name
            is a hash of the backend's ``cache_key(text, speaker, key)`` when it has one, else of
            its class name, text, speaker and key.

    Counts :attr:`synthesized` and :attr:`cache_hits` in this process.
    """

    def __init__(self, backend: Callable[..., Any], sample_rate: int, cache_dir: str | os.PathLike | None = None):
        if not callable(backend):
            raise TypeError(f"a TTS backend must be callable (text -> waveform), got {type(backend).__name__}")
        self.backend = backend
        self.sample_rate = int(sample_rate)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        try:
            params = inspect.signature(backend).parameters
        except (TypeError, ValueError):
            params = {}
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        self._takes = {name for name in ("speaker", "key") if takes_any or name in params}
        self.synthesized = 0
        self.cache_hits = 0
        self._lock = threading.Lock()

    def _cache_file(self, text: str, speaker: int | None, key: str | None) -> Path | None:
        if self.cache_dir is None:
            return None
        describe = getattr(self.backend, "cache_key", None)
        ident = describe(text, speaker, key) if callable(describe) else repr(
            (type(self.backend).__module__, type(self.backend).__qualname__, text, speaker, key))
        digest = hashlib.sha256(f"{ident}\0{self.sample_rate}".encode("utf-8")).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest[2:24]}.flac"

    def __call__(self, text: str, speaker: int | None = None, key: str | None = None) -> torch.Tensor:
        """The synthesised utterance: (samples,) float32 at :attr:`sample_rate`.

        Raises:
            TTSError: the backend failed or returned no samples, naming the text (and key).
        """
        where = f"{text!r}" + (f" ({key})" if key else "")
        cached = self._cache_file(text, speaker, key)
        if cached is not None and cached.is_file():
            try:
                audio, rate = sf.read(cached, dtype="float32")
                if rate == self.sample_rate and audio.ndim == 1 and audio.size:
                    with self._lock:
                        self.cache_hits += 1
                    return torch.from_numpy(audio)
            except (sf.LibsndfileError, RuntimeError):
                logger.warning("unreadable TTS cache file %s; synthesising %s again", cached, where)
        kwargs = {}
        if "speaker" in self._takes and speaker is not None:
            kwargs["speaker"] = speaker
        if "key" in self._takes and key is not None:
            kwargs["key"] = key
        try:
            out = self.backend(text, **kwargs)
        except TTSError as err:
            raise TTSError(f"TTS of {where}: {err}") from err
        audio = _as_waveform(out, getattr(self.backend, "sample_rate", None), self.sample_rate, where)
        with self._lock:
            self.synthesized += 1
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(f".{cached.name}.{os.getpid()}.{threading.get_ident()}.part")
            sf.write(tmp, np.clip(audio.numpy(), -1.0, 1.0), self.sample_rate, format="FLAC", subtype="PCM_24")
            os.replace(tmp, cached)
            audio, _ = sf.read(cached, dtype="float32")  # what later epochs will read, bit for bit
            audio = torch.from_numpy(audio)
        return audio


def _as_waveform(out: Any, backend_rate: int | None, sample_rate: int, where: str) -> torch.Tensor:
    rate = backend_rate
    if isinstance(out, tuple) and len(out) == 2:
        out, rate = out
    if rate is None:
        raise TTSError(f"TTS of {where}: the backend returned a bare waveform but has no sample_rate "
                       f"attribute; return (waveform, sample_rate) or set backend.sample_rate")
    audio = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    audio = np.squeeze(audio).astype(np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise TTSError(f"TTS of {where}: expected a 1-D waveform, got shape {np.shape(out)}")
    if not np.isfinite(audio).all():
        raise TTSError(f"TTS of {where}: the waveform has NaN or infinite samples")
    if int(rate) != sample_rate:
        audio = soxr.resample(audio, int(rate), sample_rate, quality="HQ").astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(audio))


def speaker_ids(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[int]:
    """NeMo's ``speakers_filepath``: files of whitespace-separated integer speaker ids (a path, a
    comma-separated string or a list); the sorted set of ids.

    Raises:
        ValueError: a missing file or a token that is not an integer, naming file and line.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [p for p in os.fspath(paths).split(",") if p.strip()]
    ids: set[int] = set()
    for path in paths:
        path = Path(os.path.expanduser(os.fspath(path).strip()))
        if not path.is_file():
            raise ValueError(f"speakers file not found: {path}")
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                for token in line.split():
                    try:
                        ids.add(int(token))
                    except ValueError:
                        raise ValueError(f"{path}:{line_no}: speaker ids must be integers, got {token!r}") from None
    if not ids:
        raise ValueError(f"no speaker id in {list(map(str, paths))}")
    return sorted(ids)


# name -> factory(**options) -> backend; ``text_data.tts.backend`` picks one by name.
TTS_BACKENDS: dict[str, Callable[..., Any]] = {}


def register_tts_backend(name: str, factory: Callable[..., Any]) -> None:
    """Make ``text_data.tts.backend: <name>`` build ``factory(**options)`` (the section's other
    keys, ``cache_dir`` excepted). Register a neural TTS this way before calling ``train``."""
    if not callable(factory):
        raise TypeError(f"TTS backend factory for {name!r} must be callable")
    TTS_BACKENDS[name] = factory


def _espeak_factory(**options: Any) -> EspeakTTS:
    tuples = {k: tuple(v) for k, v in options.items() if isinstance(v, (list, tuple))}
    return EspeakTTS(**{**options, **tuples})


register_tts_backend("espeak", _espeak_factory)


def build_synthesizer(tts_cfg: Any, sample_rate: int, where: str = "text_data.tts") -> Synthesizer:
    """A :class:`Synthesizer` from a config section ``{backend: espeak, cache_dir: ..., <backend
    options>}`` (a plain callable is accepted as it is). ``cache_dir`` defaults to
    ``<data cache root>/tts`` (see :func:`myna.data.stores.cache_root`); ``cache_dir: false``
    turns caching off.

    Raises:
        ValueError: an unknown backend or option, naming ``where``.
    """
    from myna.data.stores import cache_root

    if callable(tts_cfg):
        return Synthesizer(tts_cfg, sample_rate, cache_root() / "tts")
    options = dict(tts_cfg or {})
    name = options.pop("backend", "espeak")
    cache_dir = options.pop("cache_dir", None)
    if name not in TTS_BACKENDS:
        raise ValueError(f"{where}.backend={name!r} is not a TTS backend (known: {sorted(TTS_BACKENDS)}; "
                         f"register others with myna.data.tts.register_tts_backend)")
    try:
        backend = TTS_BACKENDS[name](**options)
    except TypeError as err:
        raise ValueError(f"{where}: bad options for backend {name!r}: {err}") from None
    if cache_dir is False:
        cache = None
    else:
        cache = Path(cache_dir) if cache_dir else cache_root() / "tts" / name
    return Synthesizer(backend, sample_rate, cache)
