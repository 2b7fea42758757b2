"""Whole NeMo checkpoints load with myna.load and reproduce NeMo's references stage by stage."""

import numpy as np
import pytest
import torch

import myna
from myna.models.ctc import CTCModel
from myna.models.transducer import TransducerModel

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def inputs(nemo_fixtures):
    return np.load(nemo_fixtures / "inputs.npz")


def _load(nemo_fixtures, name):
    return myna.load(nemo_fixtures / f"{name}.nemo"), np.load(nemo_fixtures / f"{name}_reference.npz")


def _max_abs(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def test_loaded_model_matches_features_encoder_and_lengths(nemo_fixtures, inputs, nemo_model):
    model, ref = _load(nemo_fixtures, nemo_model)
    assert not model.training
    audio, lengths = torch.from_numpy(inputs["batch"]), torch.from_numpy(inputs["batch_len"])
    with torch.no_grad():
        features, feature_lengths = model.featurize(audio, lengths)
        assert feature_lengths.tolist() == ref["batch_processed_signal_length"].tolist()
        # Low-energy cells carry float32 FFT rounding of ~2e-4 (see tests/test_features.py).
        assert _max_abs(features.transpose(1, 2), ref["batch_processed_signal"]) < 5e-4
        reference_features = torch.from_numpy(ref["batch_processed_signal"]).transpose(1, 2)
        encoded, encoded_lengths = model.encode(reference_features, feature_lengths)
    assert encoded_lengths.tolist() == ref["batch_encoded_len"].tolist()
    assert _max_abs(encoded.transpose(1, 2), ref["batch_encoded"]) < 1e-4


def test_loaded_transducer_matches_prediction_joint_loss_and_greedy(nemo_fixtures, transducer_model):
    model, ref = _load(nemo_fixtures, transducer_model)
    assert isinstance(model, TransducerModel)
    encoded = torch.from_numpy(ref["batch_encoded"]).transpose(1, 2)
    encoded_lengths = torch.from_numpy(ref["batch_encoded_len"])
    targets, target_len = torch.from_numpy(ref["targets"]), torch.from_numpy(ref["target_len"])
    with torch.no_grad():
        pred, (h, c) = model.decoder(targets, target_len)
        assert _max_abs(pred.transpose(1, 2), ref["batch_decoder_output"]) < 1e-4
        log_probs = model.joint(encoded, pred).log_softmax(-1)
        assert _max_abs(log_probs, ref["batch_joint_output"]) < 1e-4
        losses = model.forward_transducer(encoded, encoded_lengths, targets, target_len)
        rnnt = losses.get("rnnt_loss", losses["loss"])
        assert float(rnnt) == pytest.approx(float(ref["batch_rnnt_loss"]), rel=1e-4)
        if "batch_hybrid_loss" in ref:
            ctc = model.forward_ctc(encoded, encoded_lengths, targets, target_len)
            assert float(ctc) == pytest.approx(float(ref["batch_ctc_loss"]), rel=1e-4)
            w = model.loss_config.ctc_weight
            assert float((1 - w) * rnnt + w * ctc) == pytest.approx(float(ref["batch_hybrid_loss"]), rel=1e-4)
        hyps = model.decode(encoded, encoded_lengths)
    assert [h.text for h in hyps] == ref["batch_greedy_rnnt_text"].tolist()


def test_loaded_ctc_model_matches_log_probs_loss_and_text(nemo_fixtures, ctc_model):
    model, ref = _load(nemo_fixtures, ctc_model)
    assert isinstance(model, CTCModel)
    encoded = torch.from_numpy(ref["batch_encoded"]).transpose(1, 2)
    encoded_lengths = torch.from_numpy(ref["batch_encoded_len"])
    with torch.no_grad():
        assert _max_abs(model.decoder(encoded), ref["batch_log_probs"]) < 1e-4
        loss = model.forward_ctc(encoded, encoded_lengths, torch.from_numpy(ref["targets"]),
                                 torch.from_numpy(ref["target_len"]))
        assert float(loss) == pytest.approx(float(ref["batch_ctc_loss"]), rel=1e-4)
        hyps = model.decode(encoded, encoded_lengths)
    assert [h.text for h in hyps] == ref["batch_greedy_ctc_text"].tolist()


def test_transcribe_from_the_wav_equals_nemo_transcribe(nemo_fixtures, nemo_model):
    model, ref = _load(nemo_fixtures, nemo_model)
    assert model.transcribe([nemo_fixtures / "input_single.wav"]) == ref["transcribe_single_text"].tolist()
