"""NeMo SSL .nemo files (SpeechEncDecSelfSupervisedModel) load with myna.load and reproduce every
recorded stage from the recorded masks and negatives; a .nemo myna writes restores in NeMo 3.0
and gives the same losses there."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import myna
from myna.interop.nemo import save_nemo
from myna.models.ssl import SelfSupervisedModel

pytestmark = pytest.mark.parity


def _max_rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _replay(model, ref):
    """myna's pass on the recorded clean features with the recorded mask and negatives."""
    features = torch.from_numpy(ref["processed_signal"]).transpose(1, 2)
    lengths = torch.from_numpy(ref["processed_signal_length"]).long()
    aug_mask = torch.from_numpy(ref["aug_mask"]).transpose(1, 2)
    with torch.no_grad():
        return model.forward_features(features, lengths, aug_mask=aug_mask,
                                      negative_indices={"contrastive": torch.from_numpy(ref["neg_idxs"])})


@pytest.fixture(scope="module")
def loaded(nemo_ssl_fixtures):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = (myna.load(nemo_ssl_fixtures / f"{name}.nemo"),
                           np.load(nemo_ssl_fixtures / f"{name}_reference.npz"),
                           json.loads((nemo_ssl_fixtures / f"{name}_reference.json").read_text()))
        return cache[name]
    return get


def test_ssl_nemo_loads_with_nemo_keys_and_features_match(loaded, nemo_ssl_model, nemo_ssl_fixtures):
    model, ref, _ = loaded(nemo_ssl_model)
    assert isinstance(model, SelfSupervisedModel) and not model.training
    keys = json.loads((nemo_ssl_fixtures / f"{nemo_ssl_model}_state_dict.json").read_text())
    assert sorted(model.state_dict()) == sorted(keys)
    audio = torch.from_numpy(ref["input_signal"])
    with torch.no_grad():
        features, lengths = model.featurize(audio, torch.from_numpy(ref["input_signal_length"]).long())
    assert lengths.tolist() == ref["processed_signal_length"].tolist()
    np.testing.assert_allclose(features.transpose(1, 2).numpy(), ref["processed_signal"], atol=5e-4)


def test_ssl_replay_matches_masks_encoder_quantizer_and_decoders(loaded, nemo_ssl_model):
    model, ref, _ = loaded(nemo_ssl_model)
    out = _replay(model, ref)
    np.testing.assert_array_equal(out.masked.transpose(1, 2).numpy(), ref["masked_processed_signal"])
    np.testing.assert_array_equal(out.spec_masks.transpose(1, 2).numpy(), ref["spec_masks"])
    assert out.encoded_lengths.tolist() == ref["encoded_len"].tolist()
    assert _max_rel(out.encoded.transpose(1, 2), ref["encoded"]) < 1e-4
    if "layer_output" in ref:
        assert _max_rel(out.layer_outputs["layers.0"], ref["layer_output"]) < 1e-4
    stages = out.losses["contrastive"].stages
    assert _max_rel(stages["quantizer_input"], ref["quantizer_input"]) < 1e-6
    np.testing.assert_allclose(stages["quantizer_logits"].numpy(), ref["quantizer_logits"], atol=2e-4)
    np.testing.assert_array_equal(stages["quantizer_ids"].numpy(), ref["quantizer_codevector_idx"])
    np.testing.assert_array_equal(stages["quantizer_target_ids"].numpy(), ref["quantizer_target_ids"])
    np.testing.assert_allclose(stages["quantized_targets"].numpy(), ref["quantized_targets"], atol=1e-6)
    assert float(stages["prob_ppl_loss"]) == pytest.approx(float(ref["quantizer_prob_ppl"]), abs=1e-5)
    np.testing.assert_array_equal(stages["step_mask"].numpy(), ref["contrastive_step_mask"])
    for name in out.decoder_outputs:
        key = f"{name}_decoder_output"
        assert _max_rel(out.decoder_outputs[name], ref[key]) < 1e-4, name
    np.testing.assert_allclose(stages["predictions"].numpy(), ref["contrastive_out_masked"], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(stages["positives"].numpy(), ref["contrastive_targets_masked"])
    logits, expected = stages["logits"].numpy(), ref["contrastive_similarity_logits"]
    np.testing.assert_array_equal(np.isinf(logits), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(logits[finite], expected[finite], atol=1e-3)
    if "contrastive_reduced_target_ids" in ref:
        np.testing.assert_array_equal(out.losses["contrastive"].target_ids.numpy(),
                                      ref["contrastive_reduced_target_ids"])
        np.testing.assert_array_equal(out.losses["contrastive"].target_lengths.numpy(),
                                      ref["contrastive_reduced_target_lengths"])


def test_ssl_replay_matches_every_loss_and_the_total(loaded, nemo_ssl_model):
    model, ref, meta = loaded(nemo_ssl_model)
    out = _replay(model, ref)
    assert set(out.losses) == set(meta["loss_list"])
    for name, result in out.losses.items():
        assert float(result.loss) == pytest.approx(float(ref[f"loss_{name}"]), rel=1e-4), name
    assert tuple(out.loss.shape) == tuple(ref["loss_total"].shape)
    assert float(out.loss) == pytest.approx(float(ref["loss_total"][0]), rel=1e-4)


def test_ssl_nemo_written_by_myna_loads_back_with_the_same_weights(loaded, nemo_ssl_model, tmp_path):
    model, ref, _ = loaded(nemo_ssl_model)
    path = save_nemo(model, tmp_path / "out.nemo")
    again = myna.load(path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert float(_replay(again, ref).loss) == float(_replay(model, ref).loss)


_NEMO_SCRIPT = r"""
import sys, numpy as np, torch
from nemo.collections.asr.models.ssl_models import SpeechEncDecSelfSupervisedModel
model = SpeechEncDecSelfSupervisedModel.restore_from(sys.argv[1], map_location="cpu")
model.eval(); model.preprocessor.featurizer.dither = 0.0
ref = np.load(sys.argv[2])
aug = torch.from_numpy(ref["aug_mask"])
model.spec_augmentation.forward = lambda input_spec, length: input_spec.masked_fill(aug, 0.0)
neg = torch.from_numpy(ref["neg_idxs"])
contrastive = model.decoder_losses["contrastive"]["loss"]
def sample_negatives(y, num):
    negs = y[neg.view(-1)].view((num, contrastive.num_negatives) + y.shape[1:]).transpose(0, 1)
    return negs, neg
contrastive.sample_negatives = sample_negatives
model._in_validation_step = True
with torch.no_grad():
    spec, masks, enc, enc_len = model.forward(input_signal=torch.from_numpy(ref["input_signal"]),
                                              input_signal_length=torch.from_numpy(ref["input_signal_length"]))
    total, parts = model.decoder_loss_step(spec, masks, enc, enc_len)
np.savez(sys.argv[3], total=total.numpy(), cls=type(model).__name__,
         **{"loss_" + k: v.numpy() for k, v in parts.items()})
"""


def _nemo_python():
    candidates = [sys.executable] + ([os.environ["MYNA_NEMO_PYTHON"]] if os.environ.get("MYNA_NEMO_PYTHON") else [])
    for python in candidates:
        if subprocess.run([python, "-c", "import nemo.collections.asr"], capture_output=True).returncode == 0:
            return python
    pytest.skip("nemo_toolkit is not importable (set MYNA_NEMO_PYTHON to an interpreter that has it)")


def test_nemo_restores_the_ssl_nemo_myna_writes_with_the_same_losses(loaded, nemo_ssl_fixtures, tmp_path):
    python = _nemo_python()
    name = "conformer_ssl_contrastive_mlm"
    model, ref, _ = loaded(name)
    path = save_nemo(model, tmp_path / "out.nemo")
    (tmp_path / "run.py").write_text(_NEMO_SCRIPT)
    subprocess.run([python, str(tmp_path / "run.py"), str(path), str(nemo_ssl_fixtures / f"{name}_reference.npz"),
                    str(tmp_path / "nemo.npz")], check=True, capture_output=True)
    nemo = np.load(tmp_path / "nemo.npz")
    assert str(nemo["cls"]) == "SpeechEncDecSelfSupervisedModel"
    # NeMo recomputes the features from the waveform; myna's replay starts from the recorded ones.
    for key in ("loss_contrastive", "loss_mlm", "loss_mlm_l0"):
        assert float(nemo[key]) == pytest.approx(float(ref[key]), rel=1e-4), key
    assert float(nemo["total"][0]) == pytest.approx(float(_replay(model, ref).loss), rel=1e-4)
