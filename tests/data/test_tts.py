"""myna.data.tts: the espeak-ng backend, the cached Synthesizer around any text -> waveform callable."""

import numpy as np
import pytest
import soundfile as sf
import torch

from myna.data.tts import EspeakTTS, Synthesizer, TTSError, espeak_available, shape_utterance, speaker_ids

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed "
                                  "(apt-get install espeak-ng; scripts/test.sh installs it where apt works)")


class ToneTTS:
    """A stand-in neural TTS: one 440 Hz tone of 0.1 s per word, at 22.05 kHz."""

    sample_rate = 22050

    def __init__(self):
        self.calls = []

    def __call__(self, text, speaker=None):
        self.calls.append((text, speaker))
        n = int(0.1 * self.sample_rate) * len(text.split())
        return 0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / self.sample_rate)


def test_plain_callable_backend_is_resampled_and_gets_the_speaker(tmp_path):
    backend = ToneTTS()
    tts = Synthesizer(backend, sample_rate=16000)
    audio = tts("one two three", speaker=7)
    assert audio.dtype == torch.float32 and abs(audio.shape[0] - 3 * 2205 * 16000 / 22050) <= 1
    assert backend.calls == [("one two three", 7)]


def test_cache_serves_each_utterance_once_and_keys_on_speaker_and_key(tmp_path):
    backend = ToneTTS()
    tts = Synthesizer(backend, sample_rate=16000, cache_dir=tmp_path / "c")
    first = tts("one two", speaker=1, key="a.json:1")
    again = tts("one two", speaker=1, key="a.json:1")
    other = tts("one two", speaker=2, key="a.json:1")
    assert torch.equal(first, again) and len(backend.calls) == 2 and tts.cache_hits == 1
    assert other.shape == first.shape
    files = list((tmp_path / "c").rglob("*.flac"))
    assert len(files) == 2 and sf.info(files[0]).samplerate == 16000


def test_backend_returning_a_rate_pair_and_bad_outputs(tmp_path):
    assert Synthesizer(lambda t: (np.ones(800) * 0.1, 8000), 16000)("x").shape == (1600,)
    with pytest.raises(TTSError, match="no sample_rate"):
        Synthesizer(lambda t: np.ones(10), 16000)("x")
    with pytest.raises(TTSError, match=r"'x': expected a 1-D waveform"):
        Synthesizer(lambda t: (np.ones((2, 10)), 16000), 16000)("x")
    with pytest.raises(TTSError, match="NaN"):
        Synthesizer(lambda t: (np.full(10, np.nan), 16000), 16000)("x")
    with pytest.raises(TypeError, match="must be callable"):
        Synthesizer("espeak", 16000)


def test_shape_utterance_trims_to_margins_and_levels():
    rate = 1000
    audio = np.concatenate([np.zeros(500), 0.2 * np.ones(300), np.zeros(700)]).astype(np.float32)
    out = shape_utterance(audio, rate, before=0.1, after=0.05, peak=0.5, sample_rate=rate)
    assert out.shape == (100 + 300 + 50,) and np.isclose(np.abs(out).max(), 0.5)
    assert not out[:100].any() and not out[-50:].any()
    with pytest.raises(TTSError, match="silence"):
        shape_utterance(np.zeros(10), rate, 0.1, 0.1, 0.5, rate)


def test_speaker_files_are_read_as_nemo_does(tmp_path):
    (tmp_path / "a.txt").write_text("3 1\n2\n")
    (tmp_path / "b.txt").write_text("1 9\n")
    assert speaker_ids(f"{tmp_path / 'a.txt'},{tmp_path / 'b.txt'}") == [1, 2, 3, 9]
    (tmp_path / "bad.txt").write_text("1\nx2\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: speaker ids must be integers"):
        speaker_ids(tmp_path / "bad.txt")


def test_espeak_draw_is_fixed_per_key_and_speaker_picks_the_voice():
    tts = EspeakTTS(seed=3)
    assert tts.draw("a:1") == tts.draw("a:1") and tts.draw("a:1") != tts.draw("a:2")
    assert tts.draw("a:1", speaker=0)["voice"] == tts.speakers[0]
    assert tts.draw("a:1", speaker=len(tts.speakers) + 2)["voice"] == tts.speakers[2]


@needs_espeak
def test_espeak_speaks_with_varied_voices_and_caches(tmp_path):
    tts = Synthesizer(EspeakTTS(seed=1, sample_rate=8000), sample_rate=16000, cache_dir=tmp_path)
    a = tts("three one four", key="t:1")
    b = tts("three one four", key="t:2")  # another draw: voice, rate, pitch differ
    assert a.dtype == torch.float32 and 0.3 * 16000 < a.shape[0] < 4 * 16000
    assert a.shape != b.shape
    assert torch.equal(tts("three one four", key="t:1"), a) and tts.cache_hits == 1 and tts.synthesized == 2
