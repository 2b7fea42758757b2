"""wav2vec 2.0 blocks: shapes and lengths, weight-norm key forms, masking of padding, Hourglass."""

import pytest
import torch

from myna.nn.wav2vec2 import (ConvFeatureEncoder, PositionalConvEmbedding, TransformerEncoder, Wav2Vec2Encoder,
                              grad_multiply, parse_hourglass)

TINY = dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, conv_dim=(16,) * 7,
            pos_conv_kernel=8, pos_conv_groups=4)


def _encoder(**overrides):
    torch.manual_seed(0)
    return Wav2Vec2Encoder(**{**TINY, **overrides}).eval()


def test_feature_encoder_lengths_hop_and_receptive_field():
    enc = ConvFeatureEncoder()
    assert enc.hop == 320 and enc.receptive_field == 400
    lengths = torch.tensor([400, 719, 720, 16000])
    assert enc.output_lengths(lengths).tolist() == [1, 1, 2, 49]
    for frames in (1, 2, 49):
        assert int(enc.output_lengths(torch.tensor([enc.min_samples(frames)]))) == frames
        assert int(enc.output_lengths(torch.tensor([enc.min_samples(frames) - 1]))) == frames - 1


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_encoder_output_shape_and_lengths(norm):
    enc = _encoder(feat_extract_norm=norm)
    audio = torch.randn(2, 8000)
    hidden, lengths = enc(audio, torch.tensor([8000, 5000]))
    assert hidden.shape == (2, 24, 32)
    assert lengths.tolist() == [24, 15]
    assert (enc(audio.unsqueeze(-1), torch.tensor([8000, 5000]))[0] == hidden).all()  # (B, L, 1) accepted


def test_audio_shorter_than_one_frame_is_an_error_naming_the_row():
    with pytest.raises(ValueError, match=r"batch row\(s\) \[1\] have \[399\] samples.*at least 400"):
        _encoder()(torch.randn(2, 1000), torch.tensor([1000, 399]))


def test_layer_norm_variant_ignores_padding_with_attention_mask():
    # The LN feature encoder is per frame, attention masks the padded keys and the positional
    # conv sees zeros there, so a padded row's valid frames equal the utterance alone.
    enc = _encoder(feat_extract_norm="layer", layer_norm_first=True)
    audio = torch.randn(1, 5000)
    alone, n = enc(audio, torch.tensor([5000]))
    padded, _ = enc(torch.cat([audio, torch.randn(1, 3000)], 1), torch.tensor([5000]))
    assert torch.allclose(padded[:, : int(n)], alone, atol=1e-5)
    # HF's Base-style behaviour (no attention mask) lets the padding in.
    unmasked, _ = _encoder(feat_extract_norm="layer", layer_norm_first=True, use_attention_mask=False)(
        torch.cat([audio, torch.randn(1, 3000)], 1), torch.tensor([5000]))
    assert not torch.allclose(unmasked[:, : int(n)], alone, atol=1e-3)


def test_positional_conv_loads_every_weight_norm_form():
    torch.manual_seed(0)
    pos = PositionalConvEmbedding(16, kernel=8, groups=4)
    x = torch.randn(2, 10, 16)
    expected = pos(x)
    state = pos.state_dict()
    g, v = state["conv.parametrizations.weight.original0"], state["conv.parametrizations.weight.original1"]
    plain = torch._weight_norm(v, g, dim=2)
    forms = [{"conv.weight_g": g, "conv.weight_v": v, "conv.bias": state["conv.bias"]},
             {"conv.weight": plain, "conv.bias": state["conv.bias"]}]
    for form in forms:
        fresh = PositionalConvEmbedding(16, kernel=8, groups=4)
        fresh.load_state_dict(form)
        assert torch.allclose(fresh(x), expected, atol=1e-6)


def test_odd_positional_kernel_keeps_every_frame():
    pos = PositionalConvEmbedding(8, kernel=5, groups=2)
    assert pos(torch.randn(1, 7, 8)).shape == (1, 7, 8)


def test_parse_hourglass():
    assert parse_hourglass("[2,(8,4),2]") == (2, 8, 4, 2)
    assert parse_hourglass(None) is None and parse_hourglass("") is None
    for bad in ("[2,8,2]", "2,(8,4)", "[2,(8,0),2]", "import os"):
        with pytest.raises(ValueError, match="hourglass"):
            parse_hourglass(bad)


def test_hourglass_is_post_ln_only():
    with pytest.raises(ValueError, match="post-LN"):
        TransformerEncoder(hidden_size=16, num_heads=2, intermediate_size=32, pos_conv_kernel=4, pos_conv_groups=2,
                           layer_norm_first=True, hourglass="[1,(1,2),1]")


@pytest.mark.parametrize("resample", ["naive", "linear"])
@pytest.mark.parametrize("frames", [11, 12])
def test_hourglass_shapes_pooled_mask_and_layer_count(resample, frames):
    torch.manual_seed(0)
    enc = TransformerEncoder(hidden_size=16, num_heads=2, intermediate_size=32, pos_conv_kernel=4, pos_conv_groups=2,
                             hourglass="[1,(2,3),1]", hourglass_resample=resample).eval()
    assert enc.num_layers == 4
    x = torch.randn(2, frames, 16)
    padding = torch.arange(frames)[None, :] >= torch.tensor([[frames], [4]])
    stages: dict = {}
    out = enc(x, padding, stages)
    assert out.shape == x.shape
    short = -(-frames // 3)
    assert stages["after_downsample"].shape == (2, short, 16)
    assert stages["after_upsample"].shape == (2, short * 3, 16)
    # row 1 has 4 valid frames: windows [0,3) and [3,6) hold valid frames, the rest are padding
    assert stages["pooled_padding_mask"][1].tolist() == [False, False] + [True] * (short - 2)
    assert not stages["pooled_padding_mask"][0].any()


def test_layerdrop_skips_layers_only_in_training():
    enc = TransformerEncoder(hidden_size=16, num_heads=2, intermediate_size=32, pos_conv_kernel=4, pos_conv_groups=2,
                             num_layers=3, layerdrop=1.0)
    x = torch.randn(1, 5, 16)
    stages: dict = {}
    enc.train()(x, None, stages)
    assert not any(k.startswith("layers_") for k in stages)
    stages = {}
    enc.eval()(x, None, stages)
    assert [k for k in stages if k.startswith("layers_")] == ["layers_0_out", "layers_1_out", "layers_2_out"]


def test_training_masks_replace_frames_with_the_mask_embedding():
    enc = _encoder(mask_time_prob=0.5, mask_time_length=2, hidden_dropout=0.0, attention_dropout=0.0,
                   layerdrop=0.0).train()
    torch.manual_seed(1)
    out = enc.extract(torch.randn(2, 8000), torch.tensor([8000, 6000]))
    mask = out.mask_time_indices
    assert mask is not None and mask.any()
    assert not mask[1, int(out.lengths[1]):].any()  # spans start inside the valid frames
    assert enc.eval().extract(torch.randn(2, 8000)).mask_time_indices is None


def test_feature_grad_mult_scales_and_freezing_stops_conv_gradients():
    x = torch.randn(3, requires_grad=True)
    grad_multiply(x, 0.1).sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), 0.1))
    enc = _encoder(freeze_feature_encoder=True).train()
    hidden, _ = enc(torch.randn(1, 4000), torch.tensor([4000]))
    hidden.sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in enc.feature_extractor.parameters())
    assert enc.feature_projection.projection.weight.grad is not None
