"""Inference backends: the exported ONNX graphs reproduce the eager outputs, every search gives the
same transcripts through onnxruntime, int8 quantizes a copy's linear and LSTM layers, and the CLI
exports and transcribes with a backend."""

import json

import numpy as np
import pytest
import torch

import myna
from myna.decoding.backends import BACKENDS, PointwiseLinear, quantize_int8, with_backend

onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx backend needs the onnx extra")

from myna.decoding.onnx_export import META_FILE, OnnxGraphs, export_onnx  # noqa: E402


@pytest.fixture(scope="module")
def fixture_batch(nemo_fixtures):
    inputs = np.load(nemo_fixtures / "inputs.npz")
    return torch.from_numpy(inputs["batch"]), torch.from_numpy(inputs["batch_len"])


@pytest.fixture(scope="module")
def exported(nemo_fixtures, nemo_model, tmp_path_factory):
    model = myna.load(nemo_fixtures / f"{nemo_model}.nemo").eval()
    out = tmp_path_factory.mktemp(f"onnx_{nemo_model}")
    export_onnx(model, out)
    return model, out


def test_onnx_graphs_reproduce_eager_outputs(exported, fixture_batch):
    model, folder = exported
    graphs = OnnxGraphs(folder)
    with torch.no_grad():
        features, lengths = model.featurize(*fixture_batch)
        encoded, encoded_lengths = model.encoder(features, lengths)
        if graphs.kind == "ctc":
            log_probs, out_lengths = graphs.ctc_encoder(features, lengths)
            assert torch.equal(out_lengths, encoded_lengths)
            assert (log_probs - model.ctc_log_probs(encoded)).abs().max() <= 1e-4
            return
        onnx_f, out_lengths = graphs.encoder(features, lengths)
        assert torch.equal(out_lengths, encoded_lengths)
        eager_f = model.joint.project_encoder(encoded)
        assert onnx_f.shape == eager_f.shape
        assert (onnx_f - eager_f).abs().max() <= 1e-4
        # Prediction network: start step, then two labels, from a non-zero state.
        state = model.decoder.initial_state(2)
        onnx_state = graphs.prediction_net.initial_state(2)
        for tokens in (None, torch.tensor([0, 3]), torch.tensor([5, model.blank_id])):
            out, state = model.decoder.step(tokens, state)
            onnx_g, onnx_state = graphs.prediction_net.step(tokens, onnx_state)
            eager_g = model.joint.project_prediction(out.unsqueeze(1)).squeeze(1)
            assert (onnx_g - eager_g).abs().max() <= 1e-4
            assert all((a - b).abs().max() <= 1e-4 for a, b in zip(onnx_state, state))
        logits = graphs.joint.joint_after_projection(onnx_f[:, 0], onnx_g)
        assert logits.shape == (2, model.joint.num_classes_with_blank)
        assert (logits - model.joint.joint_after_projection(eager_f[:, 0], eager_g)).abs().max() <= 1e-4


@pytest.mark.parametrize("strategy", ["greedy", "beam", "modified_beam"])
def test_onnx_transcripts_equal_eager_transcripts(exported, fixture_batch, strategy):
    model, folder = exported
    if strategy == "modified_beam" and not hasattr(model, "joint"):
        pytest.skip("a CTC model has no modified beam search")
    eager = with_backend(model, "eager").transcribe_batch(*fixture_batch, strategy=strategy, beam_size=3)
    onnx = with_backend(model, "onnx", onnx_dir=folder).transcribe_batch(*fixture_batch, strategy=strategy, beam_size=3)
    assert [h.tokens for h in onnx] == [h.tokens for h in eager]
    assert [h.text for h in onnx] == [h.text for h in eager]
    assert sum(len(h.tokens) for h in eager) > 0


def test_export_writes_icefall_layout_and_meta(exported):
    model, folder = exported
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["blank_id"] == model.blank_id
    names = sorted(p.name for p in folder.glob("*.onnx"))
    assert names == (["decoder.onnx", "encoder.onnx", "joiner.onnx"] if meta["kind"] == "transducer" else ["model.onnx"])


def test_int8_quantizes_linear_and_pointwise_conv_layers_of_a_copy(nemo_fixtures, fixture_batch):
    model = myna.load(nemo_fixtures / "contextnet_rnnt_bpe.nemo").eval()
    quantized = quantize_int8(model)
    from torch.ao.nn.quantized import dynamic

    assert isinstance(quantized.joint.enc, dynamic.Linear) and isinstance(quantized.joint.pred, dynamic.Linear)
    pointwise = [m for m in quantized.encoder.modules() if isinstance(m, PointwiseLinear)]
    assert pointwise and all(isinstance(m.linear, dynamic.Linear) for m in pointwise)
    depthwise = [m for m in quantized.encoder.modules() if isinstance(m, torch.nn.Conv1d)]
    assert depthwise and all(m.groups == m.in_channels for m in depthwise if m.kernel_size != (1,))
    assert not any(isinstance(m, dynamic.LSTM) for m in quantized.decoder.modules())
    assert type(model.joint.enc).__name__ == "Linear"  # the model itself is untouched
    with torch.no_grad():
        features, lengths = model.featurize(*fixture_batch)
        eager, _ = model.encoder(features, lengths)
        int8, _ = quantized.encoder(features, lengths)
        eager_logits = model.joint(eager, model.decoder(torch.tensor([[1, 2]] * 2))[0])
        int8_logits = quantized.joint(int8, quantized.decoder(torch.tensor([[1, 2]] * 2))[0])
    assert not torch.equal(int8_logits, eager_logits)
    assert (int8_logits - eager_logits).abs().max() <= 0.05 * eager_logits.abs().max()


def test_unknown_backend_is_an_error_listing_the_backends(nemo_fixtures):
    model = myna.load(nemo_fixtures / "contextnet_rnnt_bpe.nemo")
    with pytest.raises(ValueError, match="unknown inference backend 'tensorrt'.*'int8'"):
        with_backend(model, "tensorrt")
    assert BACKENDS == ("eager", "compile", "int8", "onnx")


def test_cli_export_onnx_and_transcribe_with_each_backend(nemo_fixtures, tmp_path, capsys):
    from myna.cli import main

    model = str(nemo_fixtures / "contextnet_rnnt_bpe.nemo")
    audio = str(nemo_fixtures / "input_b2.wav")
    assert main(["export-onnx", "--model", model, "--out-dir", str(tmp_path / "onnx")]) == 0
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == [
        "decoder.onnx", "encoder.onnx", "joiner.onnx", META_FILE]
    texts = {}
    for backend in ("eager", "onnx", "int8"):
        capsys.readouterr()
        assert main(["transcribe", "--model", model, "--backend", backend, audio]) == 0
        texts[backend] = capsys.readouterr().out
    assert texts["onnx"] == texts["eager"]
    assert texts["int8"].startswith(audio)
