"""The ``compile`` backend: torch.compile'd featurizer and encoder give the eager numbers and texts.

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
