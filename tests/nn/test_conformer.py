"""ConformerEncoder: NeMo parity on the shared fixtures, large-size build, checkpointing, options."""

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from myna.interop.adapter import build
from myna.nn.conformer import ConformerEncoder, make_attention_masks, stochastic_depth_drop_probs

def _read_nemo(path: Path):
    """(config dict, state dict) of an uncompressed .nemo tar."""
    with tarfile.open(path) as tar:
        names = {Path(n).name: n for n in tar.getnames()}
        cfg = yaml.safe_load(tar.extractfile(names["model_config.yaml"]))
        weights = tar.extractfile(names["model_weights.ckpt"]).read()
    return cfg, torch.load(io.BytesIO(weights), weights_only=True, map_location="cpu")


def _nemo_encoder(nemo_fixtures: Path, name: str, **overrides) -> ConformerEncoder:
    cfg, state = _read_nemo(nemo_fixtures / f"{name}.nemo")
    enc = build({**cfg["encoder"], **overrides}, "model.encoder", "encoder")
    enc.load_state_dict({k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}, strict=True)
    return enc.eval()


@pytest.mark.parity
@pytest.mark.parametrize("use_sdpa", [True, False], ids=["sdpa", "explicit"])
def test_encoder_matches_nemo_reference_on_whole_tensor(nemo_fixtures, conformer_model, use_sdpa):
    name = conformer_model
    enc = _nemo_encoder(nemo_fixtures, name, use_sdpa=use_sdpa)
    ref = np.load(nemo_fixtures / f"{name}_reference.npz")
    for prefix in ("single", "batch"):
        features = torch.from_numpy(ref[f"{prefix}_processed_signal"]).transpose(1, 2)  # (B, T, F)
        lengths = torch.from_numpy(ref[f"{prefix}_processed_signal_length"])
        with torch.no_grad():
            encoded, enc_lengths = enc(features, lengths)
        expected = torch.from_numpy(ref[f"{prefix}_encoded"]).transpose(1, 2)  # (B, T', D)
        assert enc_lengths.dtype == torch.int64
        assert enc_lengths.tolist() == ref[f"{prefix}_encoded_len"].tolist()
        assert encoded.shape == expected.shape
        # padded frames too: NeMo's masks make them deterministic and we reproduce them
        err = (encoded - expected).abs().max().item()
        assert err <= 1e-4, f"{name} {prefix}: max abs error {err:.3g}"


@pytest.mark.parity
def test_nemo_parameter_names_are_state_dict_keys_without_prefix(nemo_fixtures, conformer_model):
    import json

    keys = json.loads((nemo_fixtures / f"{conformer_model}_state_dict.json").read_text())
    cfg = yaml.safe_load((nemo_fixtures / f"{conformer_model}_model_config.yaml").read_text())
    enc = build(cfg["encoder"], "model.encoder", "encoder")
    ours = {k: list(v.shape) for k, v in enc.state_dict().items()}
    theirs = {k[len("encoder.") :]: v["shape"] for k, v in keys.items() if k.startswith("encoder.")}
    assert ours == theirs


def test_nemo_large_conformer_builds_on_meta_device():
    # NeMo Conformer-Transducer "large" encoder: d_model 512, 17 layers, 8 heads, ff x4, kernel 31
    with torch.device("meta"):
        enc = ConformerEncoder(
            feat_in=80, n_layers=17, d_model=512, n_heads=8, ff_expansion_factor=4,
            conv_kernel_size=31, subsampling="striding", subsampling_factor=4,
        )
    assert all(p.is_meta for p in enc.parameters())
    d, f = 512, 2048
    per_layer = (
        2 * (d * f + f + f * d + d)  # two feed-forwards
        + 5 * 2 * d  # five LayerNorms
        + 4 * (d * d + d) + d * d + 2 * d  # q, k, v, out, pos (no bias), pos_bias_u/v
        + (d * 2 * d + 2 * d) + (d * 31 + d) + 2 * d + (d * d + d)  # conv module
    )
    pre_encode = (9 * d + d) + (d * d * 9 + d) + (d * 20 * d + d)  # two convs, out Linear(512*20, 512)
    n_params = sum(p.numel() for p in enc.parameters())
    assert n_params == 17 * per_layer + pre_encode == 115_111_424
    assert enc.subsampling_factor == 4 and enc.output_dim == 512
    y, n = enc(torch.empty(2, 1000, 80, device="meta"), torch.tensor([1000, 800], device="meta"))
    assert y.shape == (2, 250, 512)


def _tiny(**kw) -> ConformerEncoder:
    args = dict(feat_in=16, n_layers=2, d_model=32, n_heads=4, conv_kernel_size=5, subsampling_conv_channels=8)
    args.update(kw)
    return ConformerEncoder(**args)


def test_gradient_checkpointing_gives_identical_outputs_grads_and_batchnorm_stats():
    torch.manual_seed(0)
    plain = _tiny(dropout=0.2, dropout_att=0.1, dropout_emb=0.1).train()
    ckpt = _tiny(dropout=0.2, dropout_att=0.1, dropout_emb=0.1, gradient_checkpointing=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(3, 41, 16)
    lengths = torch.tensor([41, 30, 17])
    outs = []
    for enc in (plain, ckpt):
        torch.manual_seed(123)
        y, n = enc(x, lengths)
        (y * torch.linspace(-1, 1, y.size(-1))).sum().backward()
        outs.append(y.detach())
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-6)
    for (name, p), (_, q) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)
    for (name, b), (_, c) in zip(plain.named_buffers(), ckpt.named_buffers()):
        torch.testing.assert_close(b, c, rtol=0, atol=0, msg=name)  # BN stats advanced once


def test_padding_does_not_change_valid_frames():
    torch.manual_seed(1)
    enc = _tiny().eval()
    x = torch.randn(2, 57, 16)
    with torch.no_grad():
        batch, n = enc(x, torch.tensor([57, 33]))
        alone, m = enc(x[1:, :33], torch.tensor([33]))
    assert n[1] == m[0]
    torch.testing.assert_close(batch[1, : n[1]], alone[0, : m[0]], rtol=1e-5, atol=1e-5)


def test_attention_masks_regular_and_chunked_limited():
    pad, att = make_attention_masks(torch.tensor([4, 2]), 4, (1, 0), "regular")
    assert pad.tolist() == [[False] * 4, [False, False, True, True]]
    allowed = ~att[0]
    assert allowed.int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    assert not (~att[1])[2:].any() and not (~att[1])[:, 2:].any()
    _, att = make_attention_masks(torch.tensor([6]), 6, (2, 1), "chunked_limited")
    # chunks of 2 frames; each sees its own chunk and one chunk before
    assert (~att[0]).int().tolist() == [
        [1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1],
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(self_attention_model="abs_pos"),
        dict(conv_norm_type="layer_norm", use_bias=False),
        dict(conv_context_size="causal", causal_downsampling=True, att_context_size=[8, 0]),
        dict(att_context_style="chunked_limited", att_context_size=[[4, 1], [-1, -1]], att_context_probs=[0.5, 0.5]),
        dict(subsampling="dw_striding", subsampling_factor=8, feat_out=20),
        dict(subsampling=None, subsampling_factor=1),
        dict(stochastic_depth_drop_prob=0.5, stochastic_depth_mode="uniform"),
    ],
    ids=["abs_pos", "layer_norm_nobias", "causal", "chunked_multi", "dw8_featout", "no_subsampling", "stoch_depth"],
)
def test_supported_options_run_forward_and_backward(kwargs):
    torch.manual_seed(3)
    enc = _tiny(**kwargs).train()
    y, n = enc(torch.randn(2, 40, 16), torch.tensor([40, 25]))
    assert y.shape == (2, int(enc.output_lengths(torch.tensor([40]))[0]), enc.output_dim)
    assert n.tolist() == enc.output_lengths(torch.tensor([40, 25])).tolist()
    y.sum().backward()


def test_tied_biases_are_one_parameter_shared_by_all_layers():
    enc = _tiny(untie_biases=False, n_layers=3)
    assert enc.layers[0].self_attn.pos_bias_u is enc.layers[2].self_attn.pos_bias_u
    assert "layers.2.self_attn.pos_bias_v" in enc.state_dict()


def test_stochastic_depth_probs_match_nemo():
    assert stochastic_depth_drop_probs(4, 0.3, "linear", 1) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert stochastic_depth_drop_probs(4, 0.3, "uniform", 2) == [0.0, 0.0, 0.3, 0.3]


@pytest.mark.parametrize(
    "kwargs, option",
    [
        (dict(self_attention_model="rel_pos_local_attn"), "self_attention_model"),
        (dict(subsampling="vggnet"), "vggnet"),
        (dict(subsampling="striding_conv1d"), "striding_conv1d"),
        (dict(subsampling_factor=6), "subsampling_factor"),
        (dict(conv_norm_type="instance_norm"), "conv_norm_type"),
        (dict(att_context_style="streaming"), "att_context_style"),
        (dict(conv_context_size=[1, 1]), "conv_context_size"),
        (dict(conv_kernel_size=4), "conv_kernel_size"),
        (dict(stochastic_depth_drop_prob=1.0), "stochastic_depth_drop_prob"),
        (dict(n_heads=5), "n_heads"),
    ],
)
def test_unsupported_option_is_a_value_error_naming_it(kwargs, option):
    with pytest.raises(ValueError, match=option):
        _tiny(**kwargs)
