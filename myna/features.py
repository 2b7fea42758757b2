"""Acoustic front end: waveform -> log-mel features, and SpecAugment.

:class:`MelSpectrogramFeaturizer` reproduces NeMo's ``AudioToMelSpectrogramPreprocessor``
(argument names, defaults, numerics and state-dict layout), so a NeMo checkpoint's
``preprocessor.featurizer.window`` / ``preprocessor.featurizer.fb`` buffers load into it and its
output matches NeMo's to float32 precision. :class:`SpecAugment` masks random frequency bands and
time spans of the features during training, with NeMo's ``SpectrogramAugmentation`` option names.
:class:`MaskedPatchAugmentation` is NeMo's self-supervised masking: whole patches of frames (as many
in every utterance as the shortest holds) and frequency bands, in training and evaluation alike.

Everything here is (batch, time, feature); NeMo's own tensors are (batch, feature, time).
"""

from __future__ import annotations

import contextlib
import math
import random

import numpy as np
import torch
from torch import nn

__all__ = [
    "MelSpectrogramFeaturizer",
    "SpecAugment",
    "MaskedPatchAugmentation",
    "PatchTooShortError",
    "WaveformFeaturizer",
    "mel_filterbank",
]

# Added to the standard deviation in feature normalisation (NeMo's value).
_STD_GUARD = 1e-5
# Added inside the magnitude's square root when gradients flow through the featurizer.
_SQRT_GUARD = 1e-5
ROW_BY_ROW_PADDING = 0.25
"""In inference, a batch with more than this fraction of padding samples is featurized row by row..."""
ROW_BY_ROW_MIN_PADDING_S = 1.0
"""... when its rows also carry this much padding on average (seconds): each row's own call costs
a fixed overhead, which short clips do not win back (batches of 32 FSDD isolated digits carry
0.16-0.68 s per row and ran 1.5x slower row by row; digit strings carry 1.9-2.6 s and gain)."""

# Symmetric windows (periodic=False), as NeMo builds them; "none" means a rectangular window.
_WINDOWS = {
    "hann": torch.hann_window,
    "hamming": torch.hamming_window,
    "blackman": torch.blackman_window,
    "bartlett": torch.bartlett_window,
    "none": None,
}
_NO_NORMALIZATION = (None, False, "", "none", "None", "NA")


class MelSpectrogramFeaturizer(nn.Module):
    """Log-mel spectrogram with NeMo ``AudioToMelSpectrogramPreprocessor`` semantics.

    The waveform is pre-emphasised, cut into windowed frames by a zero-padded centred STFT,
    turned into a power spectrum, projected onto a Slaney-normalised mel filterbank, log-compressed
    and normalised per utterance over its valid frames. The last STFT frame is treated as padding
    (``T_valid = L // hop`` for ``exact_pad=False``), and frames past each utterance's length are
    set to ``pad_value``.

    >>> featurizer = MelSpectrogramFeaturizer(window_size=0.025, features=80, n_fft=512, pad_to=0)
    >>> feats, feat_lens = featurizer(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    >>> feats.shape, feat_lens.tolist()
    (torch.Size([2, 101, 80]), [100, 50])

    The buffers live in the submodule ``featurizer`` (``featurizer.window`` [win_length] and
    ``featurizer.fb`` [1, features, n_fft // 2 + 1]) so NeMo state-dict keys load unchanged;
    a checkpoint's stored filterbank replaces the computed one.

    :param sample_rate: audio sample rate in Hz.
    :param window_size: window length in seconds; give it or ``n_window_size``, not both.
    :param window_stride: hop in seconds; give it or ``n_window_stride``, not both.
    :param n_window_size: window length in samples (``int(window_size * sample_rate)`` otherwise).
    :param n_window_stride: hop in samples (``int(window_stride * sample_rate)`` otherwise).
    :param window: "hann", "hamming", "blackman", "bartlett" (all symmetric) or "none".
    :param normalize: "per_feature" (mean/std per mel bin), "all_features" (one mean/std per
        utterance) or None. Statistics use the valid frames only; std is unbiased plus 1e-5.
    :param n_fft: FFT size; None picks the next power of two >= the window length.
    :param preemph: pre-emphasis coefficient (``y[t] = x[t] - preemph * x[t-1]``); None disables.
    :param features: number of mel bins.
    :param lowfreq: lowest mel-filter frequency in Hz.
    :param highfreq: highest mel-filter frequency in Hz; None (or 0) means sample_rate / 2.
    :param log: take the log of the mel energies.
    :param log_zero_guard_type: "add" (``log(x + v)``) or "clamp" (``log(max(x, v))``).
    :param log_zero_guard_value: the guard v: a number, or "tiny" / "eps" of float32.
    :param dither: std of white noise added to the waveform, in training mode only.
    :param pad_to: right-pad the time axis to a multiple of this (<= 0: no padding).
    :param frame_splicing: NeMo's splicing factor; as in NeMo, values > 1 repeat the features
        ``frame_splicing`` times along the feature axis (NeMo's splice is a plain repeat).
    :param exact_pad: no centring; pad ``(n_fft - hop) // 2`` zeros on each side instead, so the
        tensor has ``L // hop`` frames. Needs an even hop.
    :param pad_value: value written into frames past the length and into ``pad_to`` padding.
    :param mag_power: exponent applied to the STFT magnitude (2: power spectrum).
    :param rng: random source for narrow-band augmentation: a ``random.Random``, a
        ``torch.Generator`` or None (global torch RNG).
    :param nb_augmentation_prob: probability, per utterance and in training only, of zeroing every
        FFT bin at or above ``nb_max_freq`` (narrow-band augmentation).
    :param nb_max_freq: cut-off of narrow-band augmentation in Hz.
    :param mel_norm: "slaney" (area-normalised filters) or None (peak 1).
    :param use_grads: let gradients flow through the featurizer (adds 1e-5 inside the square
        root of the magnitude, as NeMo does); otherwise forward runs under ``torch.no_grad``.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        window_size: float | None = 0.02,
        window_stride: float | None = 0.01,
        n_window_size: int | None = None,
        n_window_stride: int | None = None,
        window: str | None = "hann",
        normalize: str | None = "per_feature",
        n_fft: int | None = None,
        preemph: float | None = 0.97,
        features: int = 64,
        lowfreq: float = 0,
        highfreq: float | None = None,
        log: bool = True,
        log_zero_guard_type: str = "add",
        log_zero_guard_value: float | str = 2**-24,
        dither: float = 1e-5,
        pad_to: int = 16,
        frame_splicing: int = 1,
        exact_pad: bool = False,
        pad_value: float = 0,
        mag_power: float = 2.0,
        rng: random.Random | torch.Generator | None = None,
        nb_augmentation_prob: float = 0.0,
        nb_max_freq: float = 4000,
        mel_norm: str | None = "slaney",
        use_grads: bool = False,
    ) -> None:
        super().__init__()
        if window_size and n_window_size:
            raise ValueError(
                f"give window_size ({window_size}) or n_window_size ({n_window_size}), not both"
            )
        if window_stride and n_window_stride:
            raise ValueError(
                f"give window_stride ({window_stride}) or n_window_stride ({n_window_stride}), not both"
            )
        if window_size:
            n_window_size = int(window_size * sample_rate)
        if window_stride:
            n_window_stride = int(window_stride * sample_rate)
        for name, value in (("n_window_size", n_window_size), ("n_window_stride", n_window_stride)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int (in samples), got {value!r}")
        if exact_pad and n_window_stride % 2 == 1:
            raise ValueError(f"exact_pad=True needs an even hop, got n_window_stride={n_window_stride}")
        if window not in _WINDOWS:
            raise ValueError(f"window must be one of {sorted(_WINDOWS)}, got {window!r}")
        if normalize not in _NO_NORMALIZATION and normalize not in ("per_feature", "all_features"):
            raise ValueError(
                f"normalize must be 'per_feature', 'all_features' or None, got {normalize!r}"
            )
        if log_zero_guard_type not in ("add", "clamp"):
            raise ValueError(f"log_zero_guard_type must be 'add' or 'clamp', got {log_zero_guard_type!r}")
        if isinstance(log_zero_guard_value, str) and log_zero_guard_value not in ("tiny", "eps"):
            raise ValueError(
                f"log_zero_guard_value must be a number, 'tiny' or 'eps', got {log_zero_guard_value!r}"
            )
        if not isinstance(pad_to, int) or isinstance(pad_to, bool):
            raise ValueError(f"pad_to must be an int (<= 0: no padding), got {pad_to!r}")
        if not isinstance(frame_splicing, int) or frame_splicing < 1:
            raise ValueError(f"frame_splicing must be an int >= 1, got {frame_splicing!r}")
        if mel_norm not in ("slaney", None):
            raise ValueError(f"mel_norm must be 'slaney' or None, got {mel_norm!r}")
        if not 0.0 <= nb_augmentation_prob <= 1.0:
            raise ValueError(f"nb_augmentation_prob must be in [0, 1], got {nb_augmentation_prob!r}")
        if rng is not None and not isinstance(rng, (random.Random, torch.Generator)):
            raise ValueError(f"rng must be a random.Random, a torch.Generator or None, got {rng!r}")
        if dither < 0:
            raise ValueError(f"dither must be >= 0, got {dither!r}")

        self.sample_rate = sample_rate
        self.win_length = n_window_size
        self.hop_length = n_window_stride
        self.n_fft = n_fft or 2 ** math.ceil(math.log2(n_window_size))
        if self.n_fft < self.win_length:
            raise ValueError(f"n_fft ({self.n_fft}) must be >= the window length ({self.win_length})")
        self.exact_pad = exact_pad
        # Samples of zero padding on each side: explicit with exact_pad, torch.stft's centring else.
        self.stft_pad_amount = (self.n_fft - self.hop_length) // 2 if exact_pad else None
        self.n_mels = features
        self.normalize = None if normalize in _NO_NORMALIZATION else normalize
        self.preemph = preemph
        self.log = log
        self.log_zero_guard_type = log_zero_guard_type
        self.log_zero_guard_value = log_zero_guard_value
        self.dither = dither
        self.pad_to = pad_to
        self.pad_value = pad_value
        self.frame_splicing = frame_splicing
        self.mag_power = mag_power
        self.use_grads = use_grads
        self.rng = rng
        # NeMo switches narrow-band augmentation off when the cut-off is at or above Nyquist.
        self.nb_augmentation_prob = nb_augmentation_prob if nb_max_freq < sample_rate / 2 else 0.0
        self.nb_max_fft_bin = int(nb_max_freq / sample_rate * self.n_fft)

        window_fn = _WINDOWS[window]
        window_tensor = window_fn(self.win_length, periodic=False) if window_fn is not None else None
        fb = mel_filterbank(
            sample_rate, self.n_fft, features, lowfreq, highfreq or sample_rate / 2, norm=mel_norm
        )
        self.featurizer = _FilterbankBuffers(window_tensor, fb.unsqueeze(0))

    @property
    def output_dim(self) -> int:
        """Feature dimension of the output: ``features * frame_splicing``."""
        return self.n_mels * self.frame_splicing

    @property
    def filter_banks(self) -> torch.Tensor:
        """The mel filterbank in use, [1, n_mels, n_fft // 2 + 1] float32."""
        return self.featurizer.fb

    def get_seq_len(self, lengths: torch.Tensor) -> torch.Tensor:
        """Number of valid feature frames for each utterance.

        :param lengths: (B,) int64, audio lengths in samples.
        :return: (B,) int64, ``(L + 2 * pad - n_fft) // hop`` with pad = n_fft // 2 (centred STFT)
            or (n_fft - hop) // 2 (exact_pad); 0 for empty audio. This is one less than the STFT's
            frame count for centred STFTs: NeMo treats the last frame as padding.
        """
        lengths = lengths.long()
        pad = self.stft_pad_amount if self.stft_pad_amount is not None else self.n_fft // 2
        frames = torch.div(lengths + 2 * pad - self.n_fft, self.hop_length, rounding_mode="floor")
        return torch.where(lengths == 0, torch.zeros_like(frames), frames.clamp(min=0))

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute features of a right-padded batch of waveforms.

        :param audio: (B, L) float, samples (any float dtype; computed in float32).
        :param lengths: (B,) int64, valid samples per row (<= L).
        :return: features (B, T, output_dim) float32 with T = 1 + L // hop (centred STFT) or
            L // hop (exact_pad), right-padded to a multiple of ``pad_to``; and feature lengths
            (B,) int64 from :meth:`get_seq_len`. Frames at or past a row's length hold ``pad_value``.
        """
        if audio.dim() != 2:
            raise ValueError(f"audio must be (batch, samples), got shape {tuple(audio.shape)}")
        if lengths.shape != audio.shape[:1]:
            raise ValueError(
                f"lengths must be (batch,) = ({audio.shape[0]},), got shape {tuple(lengths.shape)}"
            )
        lengths = lengths.to(device=audio.device, dtype=torch.long)
        if lengths.numel() and (bool((lengths < 0).any()) or bool((lengths > audio.shape[1]).any())):
            raise ValueError(
                f"lengths must lie in [0, {audio.shape[1]}] (the audio width), got {lengths.tolist()}"
            )
        grad_context = contextlib.nullcontext() if self.use_grads else torch.no_grad()
        with grad_context, torch.autocast(device_type=audio.device.type, enabled=False):
            if self._row_by_row(lengths, audio.shape[1]):
                return self._rows(audio, lengths)
            features = self._mel(audio.float(), lengths)
            feature_lengths = self.get_seq_len(lengths)
            features = self._normalize(features, feature_lengths)
            features = self._mask_and_pad(features, feature_lengths)
        return features.transpose(1, 2).contiguous(), feature_lengths

    def _row_by_row(self, lengths: torch.Tensor, width: int) -> bool:
        """In inference, rows of a batch that is mostly padding are computed one by one, each over
        its own samples only (the STFT, mel projection and normalisation of padding are wasted
        work: 59% of the samples in batches of 32 FSDD digit strings in file order)."""
        if self.training or self.use_grads or lengths.numel() < 2 or int(lengths.min()) < self.n_fft:
            return False
        padding = lengths.numel() * width - float(lengths.sum())
        return (padding / (lengths.numel() * max(width, 1)) > ROW_BY_ROW_PADDING
                and padding / lengths.numel() >= ROW_BY_ROW_MIN_PADDING_S * self.sample_rate)

    def _rows(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` of each row over its own samples, laid out as the batched call lays out
        (B, T, output_dim): same width, ``pad_value`` past each row's length. Valid frames agree
        with the batched computation to float32 rounding (the mel projection's summation order
        depends on the width), and no longer depend on the other rows of the batch."""
        rows = [self.forward(audio[b:b + 1, : int(lengths[b])], lengths[b:b + 1]) for b in range(audio.shape[0])]
        frames = self._frames(audio.shape[1])
        if self.pad_to > 0 and frames % self.pad_to:
            frames += self.pad_to - frames % self.pad_to
        out = audio.new_full((audio.shape[0], frames, self.output_dim), self.pad_value, dtype=torch.float32)
        for b, (row, _) in enumerate(rows):
            out[b, : row.shape[1]] = row[0, :frames]
        return out, torch.cat([row_lengths for _, row_lengths in rows])

    def _frames(self, samples: int) -> int:
        """STFT frames of a (B, samples) batch (before ``pad_to``)."""
        if self.stft_pad_amount is not None:  # exact_pad: explicit padding, no centring
            return (samples + 2 * self.stft_pad_amount - self.n_fft) // self.hop_length + 1
        return samples // self.hop_length + 1  # centred: n_fft // 2 zeros on each side

    def _mel(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, L) float32 waveform -> (B, output_dim, T) float32 (log-)mel, before normalisation."""
        if self.stft_pad_amount is not None:
            x = nn.functional.pad(x, (self.stft_pad_amount, self.stft_pad_amount))
        if self.training and self.dither > 0:
            x = x + self.dither * torch.randn_like(x)
        if self.preemph is not None:
            x = torch.cat((x[:, :1], x[:, 1:] - self.preemph * x[:, :-1]), dim=1)
            # As NeMo: positions are compared with the length in the (possibly padded) signal.
            beyond = torch.arange(x.shape[1], device=x.device)[None, :] >= lengths[:, None]
            x = x.masked_fill(beyond, 0.0)
        window = self.featurizer.window
        spec = torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=(
                torch.ones(self.win_length, device=x.device)
                if window is None
                else window.to(device=x.device, dtype=torch.float32)
            ),
            center=not self.exact_pad,
            pad_mode="constant",
            return_complex=True,
        )  # (B, n_fft // 2 + 1, T) complex64
        parts = torch.view_as_real(spec)  # (B, bins, T, 2)
        x = torch.addcmul(parts[..., 0].square(), parts[..., 1], parts[..., 1])  # |X|^2
        if self.use_grads:
            x = x + _SQRT_GUARD  # as NeMo: the magnitude is sqrt(|X|^2 + guard)
        if self.mag_power != 2.0:  # the power spectrum needs no square root
            x = x.sqrt()
            if self.mag_power != 1.0:
                x = x.pow(self.mag_power)
        if self.training and self.nb_augmentation_prob > 0.0:
            x = self._narrowband(x)
        x = torch.matmul(self.featurizer.fb.to(device=x.device, dtype=torch.float32), x)
        if self.log:
            guard_value = self._log_guard()
            if self.log_zero_guard_type == "add":
                x = torch.log(x + guard_value)
            else:
                x = torch.log(x.clamp(min=guard_value))
        if self.frame_splicing > 1:
            x = x.repeat(1, self.frame_splicing, 1)
        return x

    def _log_guard(self) -> float:
        if self.log_zero_guard_value == "tiny":
            return torch.finfo(torch.float32).tiny
        if self.log_zero_guard_value == "eps":
            return torch.finfo(torch.float32).eps
        return float(self.log_zero_guard_value)

    def _narrowband(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Zero the bins >= nb_max_fft_bin of randomly chosen rows of (B, bins, T) magnitudes."""
        batch = magnitude.shape[0]
        if isinstance(self.rng, random.Random):
            draws = torch.tensor([self.rng.random() for _ in range(batch)])
        else:
            draws = torch.rand(batch, generator=self.rng)
        chosen = (draws < self.nb_augmentation_prob).to(magnitude.device)
        high = torch.arange(magnitude.shape[1], device=magnitude.device) >= self.nb_max_fft_bin
        return magnitude.masked_fill(chosen[:, None, None] & high[None, :, None], 0.0)

    def _normalize(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Normalise (B, D, T) features with statistics over each row's valid frames."""
        if self.normalize is None:
            return x
        valid = (torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None])[:, None, :]
        if self.normalize == "per_feature":
            count = lengths.to(x.dtype)[:, None, None]  # (B, 1, 1), statistics per (row, bin)
            reduce_dims: tuple[int, ...] = (2,)
        else:  # all_features: one mean and std per row
            count = (lengths.to(x.dtype) * x.shape[1])[:, None, None]
            reduce_dims = (1, 2)
        mean = torch.where(valid, x, 0.0).sum(reduce_dims, keepdim=True) / count.clamp(min=1)
        centred = torch.where(valid, x - mean, 0.0)
        var = centred.pow(2).sum(reduce_dims, keepdim=True) / (count - 1).clamp(min=1)
        # A single valid value has no spread: NeMo uses std 0 there (plus the guard).
        std = torch.where(count > 1, var.sqrt(), 0.0) + _STD_GUARD
        return (x - mean) / std

    def _mask_and_pad(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Fill frames >= length with pad_value and right-pad (B, D, T) to a multiple of pad_to."""
        beyond = torch.arange(x.shape[2], device=x.device)[None, :] >= lengths[:, None]
        x = x.masked_fill(beyond[:, None, :], self.pad_value)
        if self.pad_to > 0 and x.shape[2] % self.pad_to:
            x = nn.functional.pad(x, (0, self.pad_to - x.shape[2] % self.pad_to), value=self.pad_value)
        return x


class _FilterbankBuffers(nn.Module):
    """Holds the STFT window [win_length] and mel filterbank [1, n_mels, n_fft // 2 + 1] buffers
    under NeMo's names (``featurizer.window``, ``featurizer.fb``)."""

    def __init__(self, window: torch.Tensor | None, fb: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("window", window)
        self.register_buffer("fb", fb)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    norm: str | None = "slaney",
) -> torch.Tensor:
    """Triangular mel filterbank on the Slaney mel scale (librosa's ``filters.mel``, htk=False).

    The Slaney scale is linear (200/3 Hz per mel) below 1 kHz and logarithmic above
    (27 mels per factor 6.4). ``n_mels + 2`` points equally spaced in mel between fmin and fmax
    define overlapping triangles evaluated at the FFT bin frequencies; with ``norm="slaney"`` each
    triangle is divided by half its width in Hz so that filters have equal area.

    :param sample_rate: sample rate in Hz.
    :param n_fft: FFT size; the filters cover its ``n_fft // 2 + 1`` bins.
    :param n_mels: number of filters.
    :param fmin: lowest frequency in Hz.
    :param fmax: highest frequency in Hz (default sample_rate / 2).
    :param norm: "slaney" or None (peak 1).
    :return: (n_mels, n_fft // 2 + 1) float32, computed in float64.
    """
    if norm not in ("slaney", None):
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    if fmax is None:
        fmax = sample_rate / 2
    bin_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2)
    hz_points = _mel_to_hz(mel_points)
    widths = np.diff(hz_points)  # (n_mels + 1,)
    offsets = hz_points[:, None] - bin_freqs[None, :]  # (n_mels + 2, bins)
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        weights *= (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


_MEL_LINEAR_HZ_PER_MEL = 200.0 / 3
_MEL_BREAK_HZ = 1000.0
_MEL_BREAK = _MEL_BREAK_HZ / _MEL_LINEAR_HZ_PER_MEL  # 15 mels
_MEL_LOG_STEP = math.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    if hz < _MEL_BREAK_HZ:
        return hz / _MEL_LINEAR_HZ_PER_MEL
    return _MEL_BREAK + math.log(hz / _MEL_BREAK_HZ) / _MEL_LOG_STEP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    linear = mels * _MEL_LINEAR_HZ_PER_MEL
    logarithmic = _MEL_BREAK_HZ * np.exp(_MEL_LOG_STEP * (mels - _MEL_BREAK))
    return np.where(mels >= _MEL_BREAK, logarithmic, linear)


class SpecAugment(nn.Module):
    """Frequency and time masking of features (SpecAugment), in training mode only.

    Each utterance gets ``freq_masks`` bands of ``[0, freq_width]`` mel bins and ``time_masks``
    spans of ``[0, time_width]`` frames, widths and starts drawn uniformly, set to
    ``mask_value``. Masks never touch frames at or past the utterance's length, and a float
    ``time_width`` scales with each utterance's length. All masks of a batch are drawn at once.

    >>> augment = SpecAugment(freq_masks=2, time_masks=2, freq_width=27, time_width=0.05)
    >>> out = augment.train()(torch.randn(2, 100, 80), torch.tensor([100, 60]))
    >>> out.shape
    torch.Size([2, 100, 80])

    :param freq_masks: frequency bands per utterance.
    :param time_masks: time spans per utterance.
    :param freq_width: maximum band width in bins (clipped to the feature size).
    :param time_width: maximum span in frames (int), or a float in [0, 1]: that fraction of each
        utterance's length (at least 1 frame).
    :param mask_value: value written into masked cells.
    :param generator: a CPU torch.Generator for reproducible masks; None uses the global RNG.
    """

    def __init__(
        self,
        freq_masks: int = 0,
        time_masks: int = 0,
        freq_width: int = 10,
        time_width: int | float = 10,
        mask_value: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        counts = (("freq_masks", freq_masks), ("time_masks", time_masks), ("freq_width", freq_width))
        for name, value in counts:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if isinstance(time_width, bool) or not isinstance(time_width, (int, float)):
            raise ValueError(f"time_width must be an int >= 0 or a float in [0, 1], got {time_width!r}")
        if isinstance(time_width, int) and time_width < 0:
            raise ValueError(f"time_width must be an int >= 0 or a float in [0, 1], got {time_width!r}")
        if isinstance(time_width, float) and not 0.0 <= time_width <= 1.0:
            raise ValueError(f"a float time_width is a fraction and must be in [0, 1], got {time_width!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator or None, got {generator!r}")
        self.freq_masks = freq_masks
        self.time_masks = time_masks
        self.freq_width = freq_width
        self.time_width = time_width
        self.mask_value = float(mask_value)
        self.generator = generator

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mask a batch of features (identity in eval mode).

        :param features: (B, T, F) float.
        :param lengths: (B,) int64, valid frames per row.
        :return: (B, T, F), a new tensor (the input is not modified).
        """
        if not self.training or (self.freq_masks == 0 and self.time_masks == 0):
            return features
        batch, frames, bins = features.shape
        device = features.device
        lengths = lengths.to(device=device, dtype=torch.long).clamp(0, frames)
        valid = torch.arange(frames, device=device)[None, :] < lengths[:, None]  # (B, T)

        # Frequency bands: start in [0, F - width_max], width in [0, width_max].
        width_max = min(self.freq_width, bins)
        starts = self._uniform_int(torch.full((batch, self.freq_masks), bins - width_max + 1), device)
        widths = self._uniform_int(torch.full((batch, self.freq_masks), width_max + 1), device)
        freq_hit = _spans_to_mask(starts, widths, bins)  # (B, F)

        # Time spans: start in [0, length - width_max], width in [0, width_max], inside the length.
        lengths_cpu = lengths.cpu()
        if isinstance(self.time_width, float):
            span_max = (lengths_cpu * self.time_width).long().clamp(min=1)
        else:
            span_max = torch.full_like(lengths_cpu, self.time_width)
        span_max = torch.minimum(span_max, lengths_cpu)[:, None].expand(batch, self.time_masks)
        starts = self._uniform_int(lengths_cpu[:, None] - span_max + 1, device)
        widths = self._uniform_int(span_max + 1, device)
        time_hit = _spans_to_mask(starts, widths, frames)  # (B, T)

        mask = (time_hit[:, :, None] | freq_hit[:, None, :]) & valid[:, :, None]
        return features.masked_fill(mask, self.mask_value)

    def _uniform_int(self, high: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Integers uniform in [0, high) elementwise; high (any shape) int64 >= 1, on CPU."""
        draws = torch.rand(high.shape, generator=self.generator, dtype=torch.float64)
        return (draws * high).long().clamp(max=high - 1).to(device)


def _spans_to_mask(starts: torch.Tensor, widths: torch.Tensor, size: int) -> torch.Tensor:
    """(B, M) int64 span starts and widths -> (B, size) bool, True inside any span."""
    positions = torch.arange(size, device=starts.device)[None, None, :]
    inside = (positions >= starts[:, :, None]) & (positions < (starts + widths)[:, :, None])
    return inside.any(dim=1)


class PatchTooShortError(ValueError):
    """An utterance has fewer frames than one patch; ``rows`` lists the batch rows."""

    def __init__(self, message: str, rows: list[int]):
        super().__init__(message)
        self.rows = rows


class MaskedPatchAugmentation(nn.Module):
    """Masked patches + frequency bands over (B, T, F) features, in training and evaluation.

    Every utterance loses the same number of ``patch_size``-frame patches, counted from the
    *shortest* utterance of the batch; each picks its own among its complete patches (python's
    ``random.sample``, as NeMo). Then ``freq_masks`` bands of ``int(u * freq_width)`` bins are
    zeroed at every frame, padding included (torch's RNG). :meth:`draw` returns the mask and
    :meth:`apply` applies a given one, which is how recorded NeMo masks replay exactly.

    >>> aug = MaskedPatchAugmentation(patch_size=48, mask_patches=0.5, freq_masks=3, freq_width=20)
    >>> aug.draw(torch.tensor([260, 210]), frames=272, bins=80).shape
    torch.Size([2, 272, 80])

    :param patch_size: frames per patch (NeMo 48: 0.48 s at 10 ms). Should be a multiple of the
        contrastive loss' ``combine_time_steps`` so that every masked patch covers whole steps.
    :param mask_patches: >= 1: that many patches per utterance (int); in [0, 1): that fraction of
        the shortest utterance's frames, rounded up to whole patches.
    :param freq_masks: frequency bands per utterance.
    :param freq_width: widest band in bins (a band is ``int(u * freq_width)`` wide).
    :param mask_value: value written into masked cells (0: the losses find masks by value).
    :param rng: python ``random.Random`` for the patches; None uses the global one (as NeMo).
    :param generator: torch generator for the bands; None uses torch's global one (as NeMo).
    """

    def __init__(self, patch_size: int = 48, mask_patches: float = 10.0, freq_masks: int = 0, freq_width: int = 0,
                 mask_value: float = 0.0, rng: random.Random | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"MaskedPatchAugmentation: patch_size must be an int >= 1, got {patch_size!r}")
        if mask_patches < 0:
            raise ValueError(f"MaskedPatchAugmentation: mask_patches must be >= 0, got {mask_patches!r}")
        for name, value in (("freq_masks", freq_masks), ("freq_width", freq_width)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"MaskedPatchAugmentation: {name} must be an int >= 0, got {value!r}")
        self.patch_size = patch_size
        self.mask_patches = int(mask_patches) if mask_patches >= 1 else float(mask_patches)
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.mask_value = float(mask_value)
        self.rng = rng
        self.generator = generator

    def num_patches(self, lengths: torch.Tensor) -> int:
        """Patches masked in every utterance of a batch with valid frames ``lengths`` (B,).

        :raises PatchTooShortError: an utterance is shorter than one patch (NeMo would mask
            nothing in the whole batch and its losses would fail on zero masked steps).
        """
        short = [i for i, n in enumerate(lengths.tolist()) if n < self.patch_size]
        if short:
            details = ", ".join(f"row {i}: {int(lengths[i])} frames" for i in short)
            raise PatchTooShortError(
                f"utterance(s) shorter than one masked patch of {self.patch_size} frames ({details}); "
                f"remove them (min_duration) or lower model.spec_augment.patch_size", short)
        min_len = int(lengths.min())
        if isinstance(self.mask_patches, float):
            frames = int(min_len * self.mask_patches)
            count = frames // self.patch_size + (frames % self.patch_size != 0)
        else:
            count = self.mask_patches
        if min_len < self.patch_size * count:
            count = min_len // self.patch_size
        return count

    def draw(self, lengths: torch.Tensor, frames: int, bins: int) -> torch.Tensor:
        """A fresh mask for a batch.

        :param lengths: (B,) int valid frames. :param frames: T (padded). :param bins: F.
        :return: (B, T, F) bool, True where a cell is zeroed.
        """
        count = self.num_patches(lengths)
        sample = (self.rng or random).sample
        batch = lengths.shape[0]
        time_hit = torch.zeros(batch, frames, dtype=torch.bool)
        for b, n in enumerate(lengths.tolist()):
            for p in sample(range(int(n) // self.patch_size), count):
                time_hit[b, p * self.patch_size:(p + 1) * self.patch_size] = True
        freq_hit = torch.zeros(batch, bins, dtype=torch.bool)
        if self.freq_masks and self.freq_width:
            widths = (torch.rand(batch, self.freq_masks, generator=self.generator) * self.freq_width).long()
            starts = (torch.rand(batch, self.freq_masks, generator=self.generator) * (bins - widths)).long()
            positions = torch.arange(bins)[None, None, :]
            inside = (positions >= starts[..., None]) & (positions < (starts + widths)[..., None])
            freq_hit = inside.any(1)
        return (time_hit[:, :, None] | freq_hit[:, None, :]).to(lengths.device)

    def apply(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, F) features with the cells of a (B, T, F) bool ``mask`` set to ``mask_value``."""
        return features.masked_fill(mask, self.mask_value)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mask a batch: (B, T, F) float, (B,) int -> (B, T, F), a new tensor."""
        return self.apply(features, self.draw(lengths.cpu(), features.shape[1], features.shape[2]))


class WaveformFeaturizer(nn.Module):
    """The front end of waveform models (wav2vec 2.0): the samples themselves, optionally normalised.

    With ``normalize`` each utterance is scaled to zero mean and unit variance over its valid
    samples, ``(x - mean) / sqrt(var + 1e-7)``, and padding is set to 0 afterwards: Hugging
    Face's ``Wav2Vec2FeatureExtractor(do_normalize=True)``. Without it (fairseq / NVIDIA's Base
    recipes) the samples pass unchanged.

    :param sample_rate: the rate the model expects (16 kHz for every published wav2vec 2.0).
    :param normalize: per-utterance zero-mean, unit-variance normalisation.
    """

    hop_length = 1  # one "frame" per sample: the encoder's conv stack does all the striding

    def __init__(self, sample_rate: int = 16000, normalize: bool = False) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.normalize = bool(normalize)

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:param audio: (B, L) float waveform. :param lengths: (B,) int64 samples.
        :return: (B, L, 1) float32 samples (a one-channel feature sequence), lengths (B,)."""
        audio = audio.float()
        valid = torch.arange(audio.shape[1], device=audio.device)[None, :] < lengths[:, None]
        if self.normalize:
            count = lengths.clamp(min=1).to(audio.dtype)[:, None]
            mean = (audio * valid).sum(1, keepdim=True) / count
            var = (((audio - mean) * valid) ** 2).sum(1, keepdim=True) / count
            audio = (audio - mean) / torch.sqrt(var + 1e-7)
        return (audio * valid).unsqueeze(-1), lengths
