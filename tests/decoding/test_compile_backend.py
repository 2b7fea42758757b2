"""Inference wrappers: the ``compile`` backend (torch.compile'd featurizer and encoder) gives the eager
numbers and texts; the length-grouped encoder call equals one call on the valid frames.

Compiling takes tens of seconds on a 2-core CPU, so one small fixture model is compiled once for
this module.
"""

import numpy as np
import pytest
import torch

import myna
from myna.decoding.backends import with_backend


@pytest.fixture(scope="module")
def eager_and_compiled(nemo_fixtures):
    from myna.decoding.backends import _has_cxx_compiler

    if not _has_cxx_compiler():
        pytest.skip("torch.compile on CPU needs a C++ compiler (none on PATH)")
    model = myna.load(nemo_fixtures / "contextnet_rnnt_bpe.nemo").eval()
    return model, with_backend(model, "compile")


def test_compiled_features_and_encoder_equal_eager(eager_and_compiled, nemo_fixtures):
    model, compiled = eager_and_compiled
    inputs = np.load(nemo_fixtures / "inputs.npz")
    audio, lengths = torch.from_numpy(inputs["batch"]), torch.from_numpy(inputs["batch_len"])
    with torch.inference_mode():
        features, feature_lengths = model.featurize(audio, lengths)
        got_features, got_lengths = compiled.featurize(audio, lengths)
        encoded, encoded_lengths = model.encoder(features, feature_lengths)
        got_encoded, got_encoded_lengths = compiled.encoder(got_features, got_lengths)
    assert torch.equal(got_lengths, feature_lengths) and torch.equal(got_encoded_lengths, encoded_lengths)
    torch.testing.assert_close(got_features, features, atol=1e-4, rtol=1e-4)
    valid = torch.arange(encoded.shape[1])[None, :] < encoded_lengths[:, None]
    torch.testing.assert_close(got_encoded[valid], encoded[valid], atol=1e-4, rtol=1e-4)
    assert compiled.transcribe_batch(audio, lengths)[0].tokens == model.transcribe_batch(audio, lengths)[0].tokens


@pytest.mark.parametrize("model_name", ["contextnet_rnnt_bpe", "conformer_ctc_bpe", "fastconformer_hybrid_rnnt_ctc_bpe"])
def test_length_grouped_encoder_equals_one_call_on_valid_frames(nemo_fixtures, model_name):
    from myna.decoding.backends import LengthGroupedEncoder

    model = myna.load(nemo_fixtures / f"{model_name}.nemo").eval()
    torch.manual_seed(0)
    lengths = torch.tensor([320, 62, 300, 120, 66, 316, 0])  # 47% padding, 151 frames per row: four groups
    features = torch.randn(7, 320, model.preprocessor.output_dim)
    grouped = LengthGroupedEncoder(model.encoder)
    with torch.inference_mode():
        want, want_lengths = model.encoder(features, lengths)
        got, got_lengths = grouped(features, lengths)
    assert got.shape == want.shape and torch.equal(got_lengths, want_lengths)
    for row, n in enumerate(want_lengths.tolist()):
        torch.testing.assert_close(got[row, :n], want[row, :n], atol=1e-4, rtol=1e-4)
    assert torch.all(got[1, want.shape[1] // 2:] == 0)  # past its group's width (66 frames): zeros
    # little padding per row (short clips): one call, as without grouping
    short = torch.tensor([80, 20, 75, 30, 40, 78, 10])
    with torch.inference_mode():
        one, _ = model.encoder(features[:, :80], short)
        same, _ = grouped(features[:, :80], short)
    assert torch.equal(one, same)


def test_only_width_independent_encoders_run_in_length_groups(nemo_fixtures, hf_w2v_fixtures):
    """A wav2vec 2.0 encoder with group norm (statistics over all of a row's samples, padding
    included) gives other outputs when cut into groups, so its backend runs the batch whole."""
    from myna.decoding.backends import LengthGroupedEncoder

    grouped = with_backend(myna.load(nemo_fixtures / "conformer_ctc_bpe.nemo"), "eager")
    assert isinstance(grouped.encoder, LengthGroupedEncoder)
    model = myna.load(hf_w2v_fixtures / "w2v2_ctc_group").eval()
    assert not getattr(model.encoder, "rows_independent", False)
    runner = with_backend(model, "eager")
    assert not isinstance(runner.encoder, LengthGroupedEncoder)
    rate = model.sample_rate
    torch.manual_seed(0)
    lengths = torch.tensor([3 * rate, rate, rate // 2, 3 * rate])
    audio = 0.1 * torch.randn(4, 3 * rate)
    audio[torch.arange(3 * rate)[None, :] >= lengths[:, None]] = 0.0
    with torch.inference_mode():
        features, feature_lengths = model.featurize(audio, lengths)
        want, want_lengths = model.encoder(features, feature_lengths)
        got, got_lengths = runner.encoder(features, feature_lengths)
        cut, _ = LengthGroupedEncoder(model.encoder)(features, feature_lengths)
    assert torch.equal(got, want) and torch.equal(got_lengths, want_lengths)
    assert float((cut[2, : int(want_lengths[2])] - want[2, : int(want_lengths[2])]).abs().max()) > 1e-2


def test_contextnet_rows_are_width_independent_with_batch_norm_only():
    from myna.nn.contextnet import ContextNetBlockSpec, ContextNetEncoder

    blocks = [ContextNetBlockSpec(out_channels=16, repeat=1, kernel_size=5, stride=1, dilation=1, dropout=0.0,
                                  residual=False)]
    assert ContextNetEncoder(feat_in=8, blocks=blocks).rows_independent
    for mode in ("group", "instance", "layer"):
        assert not ContextNetEncoder(feat_in=8, blocks=blocks, normalization_mode=mode).rows_independent


def test_model_transcribe_runs_the_grouped_encoder_on_mostly_padded_batches(nemo_fixtures, monkeypatch):
    from myna.decoding.backends import LengthGroupedEncoder

    model = myna.load(nemo_fixtures / "conformer_ctc_bpe.nemo").eval()
    rate = model.sample_rate
    torch.manual_seed(0)
    lengths = torch.tensor([4 * rate, rate // 2, rate // 3])  # 77% padding, ~3 s per row
    audio = 0.1 * torch.randn(3, 4 * rate)
    audio[torch.arange(4 * rate)[None, :] >= lengths[:, None]] = 0.0
    calls = []
    one_call = LengthGroupedEncoder.__call__
    monkeypatch.setattr(LengthGroupedEncoder, "__call__", lambda self, *a: calls.append(1) or one_call(self, *a))
    got = model.transcribe_batch(audio, lengths)
    assert calls
    with torch.inference_mode():
        want = model.decode(*model.encoder(*model.featurize(audio, lengths)))
    assert [h.tokens for h in got] == [h.tokens for h in want]
