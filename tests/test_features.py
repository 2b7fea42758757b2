"""Tests for myna.features: NeMo parity of the log-mel front end, SpecAugment, config builders."""

from __future__ import annotations

import functools
import io
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from myna.interop.adapter import PREPROCESSOR, SPEC_AUGMENT, build
from myna.features import (
    MelSpectrogramFeaturizer,
    SpecAugment,
    mel_filterbank,
)

@functools.lru_cache(maxsize=None)
def _nemo_state_dict(path: Path) -> dict[str, torch.Tensor]:
    with tarfile.open(path) as archive:
        data = archive.extractfile("./model_weights.ckpt").read()
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _nemo_section(fixtures: Path, name: str, section: str) -> dict:
    cfg = OmegaConf.load(fixtures / f"{name}_model_config.yaml")
    return OmegaConf.to_container(cfg[section], resolve=True)


def build_preprocessor(section: dict) -> MelSpectrogramFeaturizer:
    return build(section, "model.preprocessor", "preprocessor", default_target=PREPROCESSOR.nemo_target)


def build_spec_augment(section: dict) -> SpecAugment:
    return build(section, "model.spec_augment", "spec_augment", default_target=SPEC_AUGMENT.nemo_target)


def _preprocessor_buffers(fixtures: Path, name: str) -> dict[str, torch.Tensor]:
    state = _nemo_state_dict(fixtures / f"{name}.nemo")
    prefix = "preprocessor."
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


# --------------------------------------------------------------------------- NeMo parity


@pytest.mark.parity
def test_features_match_nemo_reference(nemo_fixtures: Path, nemo_model: str) -> None:
    name = nemo_model
    featurizer = build_preprocessor(_nemo_section(nemo_fixtures, name, "preprocessor")).eval()
    featurizer.load_state_dict(_preprocessor_buffers(nemo_fixtures, name), strict=True)
    raw = build_preprocessor(
        {**_nemo_section(nemo_fixtures, name, "preprocessor"), "normalize": None, "pad_to": 0}
    ).eval()
    inputs = np.load(nemo_fixtures / "inputs.npz")
    reference = np.load(nemo_fixtures / f"{name}_reference.npz")
    for key in ("single", "batch"):
        audio, lengths = torch.from_numpy(inputs[key]), torch.from_numpy(inputs[f"{key}_len"])
        features, feature_lengths = featurizer(audio, lengths)
        expected = reference[f"{key}_processed_signal"].transpose(0, 2, 1)  # NeMo is (B, D, T)
        assert features.dtype == torch.float32 and feature_lengths.dtype == torch.int64
        assert features.shape == expected.shape
        assert feature_lengths.tolist() == reference[f"{key}_processed_signal_length"].tolist()
        error = np.abs(features.numpy() - expected)
        # Cells with real energy match to ~1e-5. Near-silent cells (mel energy ~1e-7, just above
        # the 2**-24 log guard) carry float32 FFT rounding that differs between CPUs by up to
        # ~2.5e-4 in the normalised value; they are a few in 10^4 and bounded separately.
        log_mel = raw(audio, lengths)[0][:, : features.shape[1]].numpy()
        energetic = np.zeros_like(error, dtype=bool)
        energetic[:, : log_mel.shape[1]] = log_mel > math.log(1e-5)
        assert error[energetic].max() <= 1e-4, (key, error[energetic].max())
        assert (error > 1e-4).mean() <= 2e-3, (key, (error > 1e-4).sum())  # 19 of 40160 here
        assert error.max() <= 5e-4, (key, error.max())


@pytest.mark.parity
def test_computed_filterbank_and_window_equal_nemo_checkpoint(nemo_fixtures: Path, nemo_model: str) -> None:
    name = nemo_model
    featurizer = build_preprocessor(_nemo_section(nemo_fixtures, name, "preprocessor"))
    stored = _preprocessor_buffers(nemo_fixtures, name)
    assert set(featurizer.state_dict()) == set(stored) == {"featurizer.window", "featurizer.fb"}
    section = _nemo_section(nemo_fixtures, name, "preprocessor")
    assert featurizer.featurizer.fb.shape == stored["featurizer.fb"].shape == (1, section["features"],
                                                                              section["n_fft"] // 2 + 1)
    assert (featurizer.featurizer.fb - stored["featurizer.fb"]).abs().max() <= 1e-6
    assert torch.equal(featurizer.featurizer.window, stored["featurizer.window"])


@pytest.mark.parity
def test_time_axis_padding_follows_pad_to(nemo_fixtures: Path, nemo_model: str) -> None:
    section = _nemo_section(nemo_fixtures, nemo_model, "preprocessor")
    pad_to = section.get("pad_to", 16)
    featurizer = build_preprocessor(section).eval()
    inputs = np.load(nemo_fixtures / "inputs.npz")
    reference = np.load(nemo_fixtures / f"{nemo_model}_reference.npz")
    features, lengths = featurizer(torch.from_numpy(inputs["batch"]), torch.from_numpy(inputs["batch_len"]))
    stft_frames = int(lengths.max()) + 1  # the last STFT frame counts as padding
    if pad_to > 0:  # right-padded to the next multiple of pad_to
        assert features.shape[1] % pad_to == 0 and 0 <= features.shape[1] - stft_frames < pad_to
    else:
        assert features.shape[1] == stft_frames
    assert features.shape == reference["batch_processed_signal"].transpose(0, 2, 1).shape
    assert lengths.tolist() == reference["batch_processed_signal_length"].tolist()
    for row, length in enumerate(lengths.tolist()):
        assert torch.all(features[row, length:] == 0)


# --------------------------------------------------------------------------- featurizer behaviour


def _small(**kwargs) -> MelSpectrogramFeaturizer:
    options = {"window_size": 0.025, "features": 80, "n_fft": 512, "pad_to": 0, **kwargs}
    return MelSpectrogramFeaturizer(**options)


def test_seq_len_drops_the_last_stft_frame() -> None:
    featurizer = _small()
    lengths = torch.tensor([0, 1, 159, 160, 161, 24800, 40000])
    assert featurizer.get_seq_len(lengths).tolist() == [0, 0, 0, 1, 1, 155, 250]
    features, out_lengths = featurizer.eval()(torch.randn(1, 40000), torch.tensor([40000]))
    assert features.shape[1] == 251 and out_lengths.tolist() == [250]


def test_exact_pad_gives_length_over_hop_frames() -> None:
    featurizer = _small(exact_pad=True).eval()
    features, lengths = featurizer(torch.randn(1, 16000), torch.tensor([16000]))
    assert features.shape[1] == 100
    assert lengths.tolist() == [(16000 + 2 * 176 - 512) // 160]


def test_default_arguments_follow_nemo() -> None:
    featurizer = MelSpectrogramFeaturizer()
    assert (featurizer.win_length, featurizer.hop_length, featurizer.n_fft) == (320, 160, 512)
    assert featurizer.output_dim == 64 and featurizer.pad_to == 16
    assert featurizer.featurizer.fb.shape == (1, 64, 257)


def test_padded_rows_and_empty_rows_hold_pad_value() -> None:
    featurizer = _small(pad_value=-3.0, pad_to=16).eval()
    features, lengths = featurizer(torch.randn(3, 8000), torch.tensor([8000, 4000, 0]))
    assert lengths.tolist() == [50, 25, 0]
    assert features.shape == (3, 64, 80)
    assert torch.all(features[1, 25:] == -3.0) and torch.all(features[2] == -3.0)
    assert torch.isfinite(features).all()


def test_dither_applies_only_in_training_mode() -> None:
    featurizer = _small(dither=1e-2)
    audio, lengths = torch.randn(1, 8000), torch.tensor([8000])
    first, _ = featurizer.eval()(audio, lengths)
    second, _ = featurizer(audio, lengths)
    assert torch.equal(first, second)
    trained, _ = featurizer.train()(audio, lengths)
    assert not torch.allclose(trained, first)


def test_runs_in_float32_under_autocast() -> None:
    featurizer = _small().eval()
    audio, lengths = torch.randn(2, 8000), torch.tensor([8000, 6000])
    expected, _ = featurizer(audio, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features, _ = featurizer(audio, lengths)
    assert features.dtype == torch.float32
    assert torch.equal(features, expected)


def test_per_feature_normalisation_standardises_each_bin() -> None:
    features, _ = _small().eval()(torch.randn(1, 16000), torch.tensor([12000]))
    valid = features[0, :75].double()
    assert valid.mean(0).abs().max() < 1e-5
    assert (valid.std(0) - 1).abs().max() < 1e-3


def test_all_features_normalisation_uses_one_mean_and_std() -> None:
    audio, lengths = torch.randn(1, 16000) * 0.01, torch.tensor([12000])
    normalised, _ = _small(normalize="all_features").eval()(audio, lengths)
    raw, _ = _small(normalize=None).eval()(audio, lengths)
    assert raw[0, :75].mean().abs() > 1  # unnormalised log-mel is far from zero mean
    valid = normalised[0, :75].double()
    assert abs(valid.mean().item()) < 1e-5
    assert abs(valid.std().item() - 1) < 1e-3
    per_bin_means = valid.mean(0)
    assert per_bin_means.abs().max() > 0.1  # one mean for all bins, not one per bin


@pytest.mark.parametrize("window", ["hann", "hamming", "blackman", "bartlett"])
def test_window_is_symmetric(window: str) -> None:
    featurizer = _small(window=window)
    expected = getattr(torch, f"{window}_window")(400, periodic=False)
    assert torch.equal(featurizer.featurizer.window, expected)
    assert torch.allclose(featurizer.featurizer.window, featurizer.featurizer.window.flip(0), atol=1e-6)


def test_rectangular_window_has_no_window_buffer() -> None:
    featurizer = _small(window="none").eval()
    assert set(featurizer.state_dict()) == {"featurizer.fb"}
    features, _ = featurizer(torch.randn(1, 8000), torch.tensor([8000]))
    assert torch.isfinite(features).all()


@pytest.mark.parametrize("guard", ["tiny", "eps", 1e-3])
def test_log_zero_guard_value_on_silence(guard) -> None:
    featurizer = _small(normalize=None, log_zero_guard_value=guard).eval()
    features, _ = featurizer(torch.zeros(1, 8000), torch.tensor([8000]))
    value = {"tiny": torch.finfo(torch.float32).tiny, "eps": torch.finfo(torch.float32).eps}.get(guard, guard)
    assert torch.allclose(features[0, :50], torch.full((50, 80), math.log(value)))


def test_clamp_guard_type_clamps_before_log() -> None:
    featurizer = _small(normalize=None, log_zero_guard_type="clamp", log_zero_guard_value=1e-2).eval()
    features, _ = featurizer(torch.randn(1, 8000) * 1e-4, torch.tensor([8000]))
    assert features[0, :50].min() >= math.log(1e-2) - 1e-6


def test_frame_splicing_repeats_features_as_nemo() -> None:
    audio, lengths = torch.randn(1, 8000), torch.tensor([8000])
    single, _ = _small().eval()(audio, lengths)
    spliced, _ = _small(frame_splicing=3).eval()(audio, lengths)
    assert spliced.shape[-1] == 240
    assert torch.equal(spliced, single.repeat(1, 1, 3))


def test_narrowband_augmentation_zeroes_high_bins_in_training() -> None:
    featurizer = _small(normalize=None, dither=0.0, nb_augmentation_prob=1.0, nb_max_freq=4000)
    audio, lengths = torch.randn(1, 8000), torch.tensor([8000])
    augmented, _ = featurizer.train()(audio, lengths)
    plain, _ = featurizer.eval()(audio, lengths)
    top_bins = featurizer.featurizer.fb[0, :, : featurizer.nb_max_fft_bin].sum(1) == 0
    assert top_bins.any()
    assert torch.allclose(augmented[0, :50, top_bins], torch.tensor(math.log(2**-24)))
    assert not torch.allclose(plain[0, :50, top_bins], torch.tensor(math.log(2**-24)))


def test_mel_filterbank_without_norm_peaks_at_one() -> None:
    fb = mel_filterbank(16000, 512, 40, norm=None)
    assert fb.shape == (40, 257)
    assert (fb.max(1).values <= 1 + 1e-6).all() and (fb.max(1).values > 0.5).all()
    peaks = fb.argmax(1)
    assert torch.all(peaks[1:] >= peaks[:-1])


def test_loads_nemo_buffers_into_a_model_preprocessor(nemo_fixtures: Path, nemo_model: str) -> None:
    model = torch.nn.Module()
    model.preprocessor = build_preprocessor(_nemo_section(nemo_fixtures, nemo_model, "preprocessor"))
    stored = _nemo_state_dict(nemo_fixtures / f"{nemo_model}.nemo")
    subset = {k: v for k, v in stored.items() if k.startswith("preprocessor.")}
    model.load_state_dict(subset, strict=True)
    assert torch.equal(model.preprocessor.featurizer.fb, stored["preprocessor.featurizer.fb"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"window": "kaiser"}, "window"),
        ({"normalize": "per_utterance"}, "normalize"),
        ({"log_zero_guard_type": "max"}, "log_zero_guard_type"),
        ({"log_zero_guard_value": "huge"}, "log_zero_guard_value"),
        ({"mel_norm": "l2"}, "mel_norm"),
        ({"pad_to": "max"}, "pad_to"),
        ({"frame_splicing": 0}, "frame_splicing"),
        ({"n_window_size": 400}, "n_window_size"),
        ({"window_stride": None, "n_window_stride": 161, "exact_pad": True}, "exact_pad"),
        ({"nb_augmentation_prob": 1.5}, "nb_augmentation_prob"),
        ({"rng": 3}, "rng"),
    ],
)
def test_invalid_featurizer_options_raise(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _small(**options)


def test_lengths_outside_audio_raise() -> None:
    with pytest.raises(ValueError, match="lengths"):
        _small()(torch.randn(2, 1000), torch.tensor([1000, 1001]))


# --------------------------------------------------------------------------- SpecAugment


def _masked(augment: SpecAugment, lengths: list[int], frames: int = 120, bins: int = 80) -> torch.Tensor:
    """Bool (B, T, F): cells SpecAugment changed on an all-ones input padded with 7."""
    lengths_t = torch.tensor(lengths)
    features = torch.ones(len(lengths), frames, bins)
    features[torch.arange(frames)[None, :] >= lengths_t[:, None]] = 7.0
    out = augment.train()(features, lengths_t)
    assert torch.all(out[features == 7.0] == 7.0)  # nothing past the length is touched
    return out != features


def test_spec_augment_masks_lie_within_lengths() -> None:
    augment = SpecAugment(freq_masks=2, time_masks=5, freq_width=20, time_width=30, mask_value=-1.0)
    for _ in range(20):
        _masked(augment, [120, 70, 13, 0])


def test_spec_augment_time_span_bounds() -> None:
    generator = torch.Generator().manual_seed(0)
    augment = SpecAugment(time_masks=1, time_width=10, generator=generator)
    widths = set()
    for _ in range(200):
        masked = _masked(augment, [120, 50])
        frames = masked.any(-1)  # (B, T)
        assert torch.equal(masked, frames[:, :, None].expand_as(masked))  # whole frames
        for row in frames:
            idx = row.nonzero().flatten()
            if len(idx):
                assert idx[-1] - idx[0] + 1 == len(idx)  # one contiguous span
            widths.add(len(idx))
    assert widths == set(range(11))  # widths 0..time_width inclusive all occur


def test_spec_augment_frequency_band_bounds() -> None:
    generator = torch.Generator().manual_seed(1)
    augment = SpecAugment(freq_masks=2, freq_width=5, generator=generator)
    widest = 0
    for _ in range(200):
        masked = _masked(augment, [120, 40])
        bins = masked[:, 0, :]  # (B, F)
        assert torch.equal(masked[0], bins[0][None, :].expand(120, -1))
        assert torch.equal(masked[1, :40], bins[1][None, :].expand(40, -1))
        assert bins.sum(-1).max() <= 2 * 5
        widest = max(widest, int(bins.sum(-1).max()))
    assert widest > 5  # two bands do add up


def test_spec_augment_fractional_time_width_scales_with_length() -> None:
    augment = SpecAugment(time_masks=1, time_width=0.1, generator=torch.Generator().manual_seed(2))
    longest = [0, 0]
    for _ in range(300):
        counts = _masked(augment, [120, 30]).any(-1).sum(-1)
        longest = [max(a, int(b)) for a, b in zip(longest, counts)]
    assert longest == [12, 3]


def test_spec_augment_is_identity_in_eval_mode() -> None:
    augment = SpecAugment(freq_masks=2, time_masks=2, freq_width=10, time_width=10).eval()
    features = torch.randn(2, 50, 80)
    assert augment(features, torch.tensor([50, 20])) is features


def test_spec_augment_same_seed_reproduces() -> None:
    features, lengths = torch.randn(4, 100, 80), torch.tensor([100, 80, 60, 40])

    def run(seed: int) -> torch.Tensor:
        augment = SpecAugment(2, 10, 27, 0.05, generator=torch.Generator().manual_seed(seed)).train()
        return augment(features, lengths)

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"freq_masks": -1}, "freq_masks"),
        ({"time_width": 1.5}, "time_width"),
        ({"time_width": "10"}, "time_width"),
        ({"freq_width": 2.5}, "freq_width"),
        ({"generator": 3}, "generator"),
    ],
)
def test_invalid_spec_augment_options_raise(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SpecAugment(**options)


def test_build_spec_augment_from_nemo_config(nemo_fixtures: Path, nemo_model: str) -> None:
    section = _nemo_section(nemo_fixtures, nemo_model, "spec_augment")
    augment = build_spec_augment(section)
    keys = ("freq_masks", "time_masks", "freq_width", "time_width")
    assert tuple(getattr(augment, k) for k in keys) == tuple(section[k] for k in keys)


@pytest.mark.parametrize("options", [dict(pad_to=16, pad_value=-2.0), dict(exact_pad=True, pad_to=0),
                                     dict(pad_to=0, normalize="all_features")])
def test_mostly_padded_batches_featurized_row_by_row_equal_the_batched_path(options, monkeypatch) -> None:
    import myna.features as features_module

    featurizer = _small(**options).eval()
    torch.manual_seed(0)
    audio = torch.randn(4, 48000)
    lengths = torch.tensor([48000, 9000, 3600, 15000])  # 60% padding, 1.8 s per row: computed row by row
    assert featurizer._row_by_row(lengths, audio.shape[1])
    by_row, by_row_lengths = featurizer(audio, lengths)
    monkeypatch.setattr(features_module, "ROW_BY_ROW_PADDING", 1.0)  # force the batched path
    assert not featurizer._row_by_row(lengths, audio.shape[1])
    batched, batched_lengths = featurizer(audio, lengths)
    assert by_row.shape == batched.shape and torch.equal(by_row_lengths, batched_lengths)
    torch.testing.assert_close(by_row, batched, atol=1e-4, rtol=1e-4)
    pad_value = options.get("pad_value", 0.0)
    assert torch.all(by_row[1, int(by_row_lengths[1]):] == pad_value)


def test_training_and_short_rows_keep_the_batched_path() -> None:
    featurizer = _small()
    lengths = torch.tensor([48000, 3000])
    assert not featurizer.train()._row_by_row(lengths, 48000)
    assert featurizer.eval()._row_by_row(lengths, 48000)
    assert not featurizer._row_by_row(torch.tensor([48000, 100]), 48000)  # a row shorter than one FFT
    assert not featurizer._row_by_row(torch.tensor([48000, 45000]), 48000)  # little padding
    # 94% padding but 0.47 s per row (a short clip beside a 1-s one): one row's call costs more than it saves
    assert not featurizer._row_by_row(torch.tensor([16000, 1000]), 16000)
