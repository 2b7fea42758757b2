import json
import random

import numpy as np
import pytest
import soundfile as sf
import torch

from myna.data.augment import build_augmentor
from myna.data.factory import build_loader


def _one(name, **settings):
    return build_augmentor({name: {"prob": 1.0, **settings}}, "model.train_ds.augmentor")


def test_gain_scales_by_a_db_draw_in_range():
    audio = torch.ones(100)
    out = _one("gain", min_gain_dbfs=-6, max_gain_dbfs=6)(audio, 16000, random.Random(0))
    gain_db = 20 * np.log10(float(out[0]))
    assert -6 <= gain_db <= 6 and torch.allclose(out, out[0].expand(100))


def test_shift_moves_samples_and_zero_fills():
    audio = torch.arange(1, 1601, dtype=torch.float32)  # 0.1 s at 16 kHz
    out = _one("shift", min_shift_ms=2.0, max_shift_ms=2.0)(audio, 16000, random.Random(0))
    assert torch.equal(out[:-32], audio[32:]) and torch.equal(out[-32:], torch.zeros(32))
    out = _one("shift", min_shift_ms=-1.0, max_shift_ms=-1.0)(audio, 16000, random.Random(0))
    assert torch.equal(out[16:], audio[:-16]) and torch.equal(out[:16], torch.zeros(16))


def test_speed_changes_the_length_by_a_rate_from_the_grid():
    audio = torch.randn(16000)
    out = _one("speed", sr=16000, min_speed_rate=0.9, max_speed_rate=1.1, num_rates=3)(audio, 16000, random.Random(3))
    assert out.shape[0] in (14400, 16000, 17600)


def test_white_noise_level_stays_in_range():
    out = _one("white_noise", min_level=-50, max_level=-40)(torch.zeros(48000), 16000, random.Random(0))
    level = 20 * np.log10(float(out.std()))
    assert -51 < level < -39


def test_random_segment_cuts_long_audio_and_pads_short_audio_only_when_asked():
    audio = torch.arange(32000, dtype=torch.float32)
    out = _one("random_segment", duration_sec=0.5)(audio, 16000, random.Random(1))
    assert out.shape[0] == 8000 and torch.equal(out, audio[int(out[0]):int(out[0]) + 8000])
    short = torch.ones(4000)
    assert _one("random_segment", duration_sec=0.5)(short, 16000, random.Random(1)).shape[0] == 4000
    padded = _one("random_segment", duration_sec=0.5, pad_to_duration=True)(short, 16000, random.Random(1))
    assert padded.shape[0] == 8000 and padded[4000:].abs().sum() == 0


def test_probability_zero_never_perturbs():
    aug = build_augmentor({"gain": {"prob": 0.0}}, "x")
    audio = torch.randn(100)
    assert torch.equal(aug(audio, 16000, random.Random(0)), audio)


@pytest.mark.parametrize("section, message", [
    ({"reverb": {"prob": 1.0}}, r"model.train_ds.augmentor.reverb: unknown perturbation"),
    ({"gain": {"prob": 1.5}}, r"model.train_ds.augmentor.gain.prob must be a probability"),
    ({"gain": {"prob": 1.0, "max_gain": 3}}, r"model.train_ds.augmentor.gain.max_gain: unknown key"),
])
def test_bad_augmentor_sections_name_the_key(section, message):
    with pytest.raises(ValueError, match=message):
        build_augmentor(section, "model.train_ds.augmentor")


def test_training_loader_perturbs_and_evaluation_loader_does_not(tmp_path):
    audio = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    sf.write(tmp_path / "a.wav", audio, 16000, subtype="FLOAT")
    (tmp_path / "m.json").write_text(json.dumps({"audio_filepath": "a.wav", "duration": 0.5, "text": "a"}) + "\n")
    section = {"manifest_filepath": str(tmp_path / "m.json"), "batch_size": 1, "sample_rate": 16000,
               "augmentor": {"gain": {"prob": 1.0, "min_gain_dbfs": 6, "max_gain_dbfs": 6}}}
    train = next(iter(build_loader(section, None, train=True, seed=0, name="train_ds")))["audio"][0]
    evaluation = next(iter(build_loader(section, None, train=False, seed=0, name="validation_ds")))["audio"][0]
    np.testing.assert_allclose(evaluation.numpy(), audio, atol=1e-6)
    np.testing.assert_allclose(train.numpy(), audio * 10 ** (6 / 20), rtol=1e-5, atol=1e-6)


def test_each_process_seed_gives_its_own_reproducible_draws():
    """Loader workers get torch seeds base_seed + worker_id; the augmentor reseeds from them."""
    aug = build_augmentor({"gain": {"prob": 1.0}}, "x")
    audio = torch.ones(10)
    draws = {}
    for seed in (11, 12, 11):
        torch.manual_seed(seed)  # what DataLoader does at the start of each worker
        draws.setdefault(seed, []).append(float(aug(audio, 16000)[0]))
    assert draws[11][0] == draws[11][1] != draws[12][0]
