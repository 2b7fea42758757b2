"""ContextNetEncoder: NeMo ConvASREncoder parity on the fixture, masking, lengths, config errors."""

import io
import json
import tarfile

import numpy as np
import pytest
import torch
import yaml

from myna.interop.adapter import build
from myna.nn.contextnet import ContextNetBlockSpec, ContextNetEncoder

def _load_nemo(path):
    """(config dict, state dict) from an uncompressed .nemo tar."""
    with tarfile.open(path) as tar:
        cfg = yaml.safe_load(tar.extractfile("./model_config.yaml").read())
        weights = torch.load(io.BytesIO(tar.extractfile("./model_weights.ckpt").read()), weights_only=True)
    return cfg, weights


def _strip(state_dict, prefix):
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _from_nemo(section):
    """The encoder a NeMo ConvASREncoder section describes (``_target_`` defaults to myna's name)."""
    return build({"_target_": "ContextNetEncoder", **section}, "model.encoder", "encoder")


@pytest.fixture(scope="module")
def nemo_encoder(nemo_fixtures, contextnet_model):
    cfg, weights = _load_nemo(nemo_fixtures / f"{contextnet_model}.nemo")
    encoder = _from_nemo(cfg["encoder"])
    encoder.load_state_dict(_strip(weights, "encoder."), strict=True)
    return encoder.eval()


@pytest.fixture(scope="module")
def reference(nemo_fixtures, contextnet_model):
    return np.load(nemo_fixtures / f"{contextnet_model}_reference.npz")


def _dummy_config():
    block = dict(kernel=[5], dilation=[1], separable=True, se=True, se_context_size=-1, kernel_size_factor=1.0)
    return dict(
        feat_in=80, activation="swish", conv_mask=True, init_mode="tds_uniform",
        jasper=[
            dict(block, filters=64, repeat=1, stride=[1], dropout=0.0, residual=False),
            dict(block, filters=64, repeat=2, stride=[2], dropout=0.1, residual=True, stride_last=True,
                 residual_mode="stride_add"),
            dict(block, filters=64, repeat=2, stride=[2], dropout=0.1, residual=True, stride_last=True,
                 residual_mode="stride_add"),
            dict(block, filters=96, repeat=1, stride=[1], dropout=0.0, residual=False),
        ],
    )


@pytest.mark.parity
@pytest.mark.parametrize("prefix", ["single", "batch"])
def test_encoder_matches_nemo_reference(nemo_encoder, reference, prefix):
    features = torch.from_numpy(reference[f"{prefix}_processed_signal"]).transpose(1, 2)  # (B, T, F)
    lengths = torch.from_numpy(reference[f"{prefix}_processed_signal_length"])
    expected = torch.from_numpy(reference[f"{prefix}_encoded"]).transpose(1, 2)  # (B, T', D)
    with torch.no_grad():
        encoded, encoded_lengths = nemo_encoder(features, lengths)
    assert encoded.shape == expected.shape
    assert encoded_lengths.tolist() == reference[f"{prefix}_encoded_len"].tolist()
    error = (encoded - expected).abs().max().item()
    assert error <= 1e-4 * max(1.0, expected.abs().max().item()), error


@pytest.mark.parity
def test_encoder_parameter_names_and_shapes_equal_nemo_keys(nemo_encoder, nemo_fixtures, contextnet_model):
    listed = json.loads((nemo_fixtures / f"{contextnet_model}_state_dict.json").read_text())
    expected = {k[len("encoder."):]: v["shape"] for k, v in listed.items() if k.startswith("encoder.")}
    ours = {k: list(v.shape) for k, v in nemo_encoder.state_dict().items()}
    assert ours == expected


@pytest.mark.parity
def test_encoder_reports_stride_and_output_dim(nemo_encoder, reference):
    # NeMo's stride-2 blocks give ceil(L / 2): the reference lengths follow the reported stride.
    stride = nemo_encoder.stride
    assert stride == nemo_encoder.subsampling_factor and stride > 1
    feature_lengths = reference["batch_processed_signal_length"]
    assert reference["batch_encoded_len"].tolist() == [-(-int(n) // stride) for n in feature_lengths]
    assert nemo_encoder.output_dim == reference["batch_encoded"].shape[1]


def test_padding_frames_do_not_change_valid_outputs(nemo_encoder, reference):
    features = torch.from_numpy(reference["single_processed_signal"]).transpose(1, 2)
    length = int(reference["single_processed_signal_length"][0])
    padded = torch.cat([features, 5.0 * torch.randn(1, 40, features.size(2))], dim=1)
    padded[:, length:] = 3.0  # garbage past the length must be masked away
    with torch.no_grad():
        alone, alone_len = nemo_encoder(features, torch.tensor([length]))
        wide, wide_len = nemo_encoder(padded, torch.tensor([length]))
    valid = int(alone_len[0])
    assert wide_len.tolist() == alone_len.tolist()
    torch.testing.assert_close(wide[:, :valid], alone[:, :valid], atol=1e-5, rtol=1e-5)


def test_stride_two_blocks_give_ceil_lengths():
    encoder = _from_nemo(_dummy_config()).eval()
    lengths = torch.tensor([37, 36, 1, 17])
    with torch.no_grad():
        encoded, encoded_lengths = encoder(torch.randn(4, 37, 80), lengths)
    expected = [-(-(-(-n // 2)) // 2) for n in lengths.tolist()]  # ceil(ceil(L/2)/2)
    assert encoded_lengths.tolist() == expected
    assert encoded.shape == (4, 10, 96)


def test_dummy_contextnet_builds_trains_and_runs():
    torch.manual_seed(0)
    encoder = _from_nemo(_dummy_config())
    assert encoder.stride == 4
    features = torch.randn(3, 120, 80)
    lengths = torch.tensor([120, 80, 33])
    encoded, encoded_lengths = encoder(features, lengths)  # training mode: dropout, batch stats
    assert encoded.shape == (3, 30, 96)
    assert encoded_lengths.tolist() == [30, 20, 9]
    encoded.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())
    encoder.eval()
    with torch.no_grad():
        again, _ = encoder(features, lengths)
    assert torch.isfinite(again).all()


def test_limited_se_context_window_runs_in_training():
    config = _dummy_config()
    for block in config["jasper"]:
        block["se_context_size"] = 8
    encoder = _from_nemo(config)
    encoded, _ = encoder(torch.randn(2, 64, 80), torch.tensor([64, 40]))
    assert torch.isfinite(encoded).all()


def test_typed_blocks_build_the_encoder_the_nemo_section_describes():
    torch.manual_seed(0)
    from_section = _from_nemo(_dummy_config())
    spec = dict(kernel_size=5, dilation=1, separable=True, se=True)
    blocks = [
        ContextNetBlockSpec(out_channels=64, repeat=1, stride=1, dropout=0.0, residual=False, **spec),
        ContextNetBlockSpec(out_channels=64, repeat=2, stride=2, dropout=0.1, residual=True, stride_last=True,
                            residual_mode="stride_add", **spec),
        ContextNetBlockSpec(out_channels=64, repeat=2, stride=2, dropout=0.1, residual=True, stride_last=True,
                            residual_mode="stride_add", **spec),
        ContextNetBlockSpec(out_channels=96, repeat=1, stride=1, dropout=0.0, residual=False, **spec),
    ]
    torch.manual_seed(0)
    typed = ContextNetEncoder(feat_in=80, blocks=blocks, activation="swish", init_mode="tds_uniform")
    ours, theirs = typed.state_dict(), from_section.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert typed.subsampling_factor == from_section.subsampling_factor == 4


def test_unknown_encoder_option_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="model.encoder.bogus_option"):
        _from_nemo({**_dummy_config(), "bogus_option": 1})


@pytest.mark.parametrize(
    "key, value",
    [("heads", 4), ("groups", 2), ("residual_dense", True), ("mystery", 1)],
)
def test_unsupported_block_option_is_a_value_error_naming_it(key, value):
    config = _dummy_config()
    config["jasper"][1][key] = value
    with pytest.raises(ValueError, match=f"model.encoder.jasper.1.{key}"):
        _from_nemo(config)


def test_wrong_feature_size_is_a_value_error():
    encoder = _from_nemo(_dummy_config())
    with pytest.raises(ValueError, match="80"):
        encoder(torch.randn(1, 20, 64), torch.tensor([20]))

