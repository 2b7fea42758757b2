"""myna.audio: reading, mono mix-down, resampling, segments, errors."""

import numpy as np
import pytest
import soundfile as sf
import torch

from myna.audio import AudioError, audio_info, load_audio, to_mono_at_rate


def _sine(freq, seconds, rate, amplitude=0.5):
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_frequency(audio: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio.numpy() * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * rate / len(audio))


def test_load_audio_returns_float32_mono_at_file_rate(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _sine(440, 0.5, 16000), 16000)
    audio = load_audio(path, 16000)
    assert audio.dtype == torch.float32 and audio.shape == (8000,)


def test_load_audio_resamples_8k_to_16k_keeping_length_and_frequency(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _sine(440, 1.0, 8000), 8000)
    audio = load_audio(path, 16000)
    assert abs(audio.shape[0] - 16000) <= 2
    assert abs(_peak_frequency(audio, 16000) - 440) < 3


def test_load_audio_mixes_channels_down_by_mean(tmp_path):
    path = tmp_path / "stereo.wav"
    left, right = _sine(300, 0.2, 8000), np.zeros(1600, dtype=np.float32)
    sf.write(path, np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    audio = load_audio(path, 8000)
    np.testing.assert_allclose(audio.numpy(), left / 2, atol=1e-6)


def test_load_audio_reads_offset_duration_segment(tmp_path):
    path = tmp_path / "ramp.wav"
    ramp = np.arange(16000, dtype=np.float32) / 16000  # value = time in seconds
    sf.write(path, ramp, 16000, subtype="FLOAT")
    audio = load_audio(path, 16000, offset=0.25, duration=0.5)
    assert audio.shape == (8000,)
    assert audio[0].item() == pytest.approx(0.25) and audio[-1].item() == pytest.approx(0.75, abs=1e-4)
    assert load_audio(path, 16000, offset=0.75).shape == (4000,)


def test_load_audio_clips_small_overshoot_but_rejects_segment_outside_file(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _sine(440, 1.0, 8000), 8000)
    assert load_audio(path, 8000, offset=0.5, duration=0.51).shape == (4000,)
    with pytest.raises(AudioError, match="a.wav"):
        load_audio(path, 8000, offset=1.5)
    with pytest.raises(AudioError, match="a.wav"):
        load_audio(path, 8000, offset=0.5, duration=2.0)


def test_missing_audio_file_error_names_it(tmp_path):
    with pytest.raises(AudioError, match="nothing.wav"):
        load_audio(tmp_path / "nothing.wav", 16000)


def test_empty_audio_file_error_names_it(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty.wav.*empty|empty.*empty.wav"):
        load_audio(path, 16000)


def test_unreadable_audio_file_error_names_it(tmp_path):
    path = tmp_path / "junk.flac"
    path.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match="junk.flac"):
        load_audio(path, 16000)
    with pytest.raises(AudioError, match="junk.flac"):
        audio_info(path)


def test_bytes_of_a_file_decode_exactly_as_the_file(tmp_path):
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([_sine(300, 0.4, 8000), _sine(500, 0.4, 8000)], axis=1), 8000)
    data = path.read_bytes()
    for offset, duration in [(0.0, None), (0.1, 0.2), (0.3, 0.12)]:  # the last overshoots within tolerance
        from_file = load_audio(path, 16000, offset=offset, duration=duration)
        from_bytes = load_audio(data, 16000, offset=offset, duration=duration, name="shard member")
        assert torch.equal(from_file, from_bytes)
    info = audio_info(data)
    assert (info.sample_rate, info.frames, info.channels) == (8000, 3200, 2)


def test_bad_bytes_and_segments_outside_them_are_errors_naming_the_source(tmp_path):
    with pytest.raises(AudioError, match="audio_3.tar member x.wav"):
        load_audio(b"RIFF and then nothing sensible" * 4, 16000, name="audio_3.tar member x.wav")
    path = tmp_path / "a.wav"
    sf.write(path, _sine(440, 0.5, 8000), 8000)
    with pytest.raises(AudioError, match="past the end of member a.wav"):
        load_audio(path.read_bytes(), 8000, offset=0.2, duration=0.5, name="member a.wav")


def test_to_mono_at_rate_averages_channels_and_resamples():
    stereo = np.stack([np.ones(800, dtype=np.float32), np.zeros(800, dtype=np.float32)], axis=1)
    mono = to_mono_at_rate(stereo, 8000, 8000)
    assert mono.dtype == torch.float32 and torch.allclose(mono, torch.full((800,), 0.5))
    assert abs(to_mono_at_rate(stereo, 8000, 16000).shape[0] - 1600) <= 2
