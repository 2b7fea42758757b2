"""SpeechModel.transcribe: NeMo's Python call (paths, arrays, tensors in; texts or hypotheses out)."""

import numpy as np
import pytest
import soundfile as sf
import torch

import myna
from myna.decoding.greedy import Hypothesis
from myna.models.base import Transcript


@pytest.fixture(scope="module")
def wavs(nemo_fixtures):
    return [nemo_fixtures / "input_single.wav", nemo_fixtures / "input_b2.wav"]


def test_paths_arrays_and_tensors_give_the_same_texts(nemo_fixtures, nemo_model, wavs):
    model = myna.load(nemo_fixtures / f"{nemo_model}.nemo")
    arrays = [sf.read(w, dtype="float32")[0] for w in wavs]  # the fixture wavs are at the model's rate
    texts = model.transcribe([str(w) for w in wavs])
    assert model.transcribe([arrays[0], torch.from_numpy(arrays[1])], batch_size=1) == texts  # mixed inputs
    assert model.transcribe(str(wavs[0])) == texts[:1]  # a single path, as NeMo accepts
    assert all(isinstance(t, Transcript) and t.text == t for t in texts)  # NeMo 2.x+ code reads .text


def test_hypotheses_carry_tokens_frames_and_text(nemo_fixtures, transducer_model, wavs):
    model = myna.load(nemo_fixtures / f"{transducer_model}.nemo")
    hyps = model.transcribe(wavs, return_hypotheses=True)
    assert all(isinstance(h, Hypothesis) for h in hyps)
    assert [h.text for h in hyps] == model.transcribe(wavs)
    assert all(len(h.tokens) == len(h.timestamps) and h.text == model.tokenizer.decode(h.tokens) for h in hyps)


def test_timestamps_give_token_word_and_segment_times_in_seconds(nemo_fixtures, nemo_model, wavs):
    model = myna.load(nemo_fixtures / f"{nemo_model}.nemo")
    hyp = model.transcribe(wavs[:1], timestamps=True)[0]
    stamps = hyp.timestamp
    assert stamps["timestep"] == hyp.timestamps
    assert [c["start_offset"] for c in stamps["char"]] == hyp.timestamps
    frame = model.frame_seconds
    assert frame == pytest.approx(model.preprocessor.hop_length / model.sample_rate * model.encoder.subsampling_factor)
    for entry in stamps["char"] + stamps["word"] + stamps["segment"]:
        assert entry["start"] == pytest.approx(entry["start_offset"] * frame)
        assert entry["end"] == pytest.approx(entry["end_offset"] * frame)
        assert entry["start_offset"] < entry["end_offset"]
    assert " ".join(w["word"] for w in stamps["word"]) == " ".join(hyp.text.split())
    if stamps["word"]:
        assert stamps["segment"][0]["start"] == stamps["word"][0]["start"]
        assert stamps["segment"][-1]["end"] == stamps["word"][-1]["end"]


def test_transcribe_restores_training_mode_and_reports_bad_inputs(nemo_fixtures, ctc_model, tmp_path):
    model = myna.load(nemo_fixtures / f"{ctc_model}.nemo").train()
    with pytest.raises(ValueError, match=r"audio\[1\]: expected a 1-D mono waveform, got shape \(2, 100\)"):
        model.transcribe([np.zeros(1600, np.float32), np.zeros((2, 100), np.float32)])
    assert model.training
    with pytest.raises(ValueError, match="missing.wav"):
        model.transcribe([tmp_path / "missing.wav"])
    with pytest.raises(ValueError, match="batch_size=0"):
        model.transcribe([np.zeros(1600, np.float32)], batch_size=0)
    assert model.training


def test_length_sorted_batches_return_texts_in_input_order(nemo_fixtures, transducer_model, tmp_path):
    model = myna.load(nemo_fixtures / f"{transducer_model}.nemo")
    audio, rate = sf.read(nemo_fixtures / "input_single.wav", dtype="float32")
    paths = []
    for i, seconds in enumerate([0.3, 1.0, 0.1, 0.6, 0.8]):  # prefixes of one recording, shuffled lengths
        paths.append(tmp_path / f"{i}.wav")
        sf.write(paths[-1], audio[: int(seconds * rate)], rate)
    sorted_hyps = model.transcribe(paths, batch_size=2, return_hypotheses=True)
    in_order = model.transcribe(paths, batch_size=2, return_hypotheses=True, sort_by_length=False)
    one_by_one = [model.transcribe(p, return_hypotheses=True)[0] for p in paths]
    assert [h.tokens for h in sorted_hyps] == [h.tokens for h in in_order] == [h.tokens for h in one_by_one]
    for got, want in zip(sorted_hyps, one_by_one):
        assert got.score == pytest.approx(want.score, rel=1e-4, abs=1e-3)
    assert len({round(h.score, 2) for h in one_by_one}) == 5  # the inputs are told apart (by score)


def test_length_sorting_still_names_an_unreadable_file(nemo_fixtures, ctc_model, tmp_path):
    model = myna.load(nemo_fixtures / f"{ctc_model}.nemo")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(ValueError, match="bad.wav"):
        model.transcribe([nemo_fixtures / "input_single.wav", bad], batch_size=2)
