import pytest
import torch

from myna.nn.ssl_decoders import ConvASRDecoderReconstruction


def test_plain_decoder_has_nemo_keys_and_is_two_pointwise_convs():
    dec = ConvASRDecoderReconstruction(feat_in=8, feat_out=5, feat_hidden=6).eval()
    assert sorted(dec.state_dict()) == ["decoder_layers.0.bias", "decoder_layers.0.weight",
                                        "decoder_layers.2.bias", "decoder_layers.2.weight"]
    x = torch.randn(2, 7, 8)
    first, last = dec.decoder_layers[0], dec.decoder_layers[2]
    expected = torch.relu(x @ first.weight[:, :, 0].T + first.bias) @ last.weight[:, :, 0].T + last.bias
    torch.testing.assert_close(dec(x), expected)


@pytest.mark.parametrize("transpose, frames", [(True, 20), (False, 5)])
def test_stride_layers_double_or_halve_time(transpose, frames):
    dec = ConvASRDecoderReconstruction(feat_in=8, feat_out=4, feat_hidden=6, stride_layers=1, non_stride_layers=1,
                                       kernel_size=5, stride_transpose=transpose).eval()
    assert dec(torch.randn(2, 10, 8)).shape == (2, frames, 4)


def test_softmax_output_is_log_probabilities():
    dec = ConvASRDecoderReconstruction(feat_in=8, feat_out=4, feat_hidden=6, apply_softmax=True)
    torch.testing.assert_close(dec(torch.randn(1, 3, 8)).exp().sum(-1), torch.ones(1, 3))


def test_even_kernel_with_conv_layers_is_rejected():
    with pytest.raises(ValueError, match="kernel_size=4"):
        ConvASRDecoderReconstruction(feat_in=8, feat_out=4, feat_hidden=6, non_stride_layers=1, kernel_size=4)
