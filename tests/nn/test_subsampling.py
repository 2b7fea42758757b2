"""nn/subsampling.py: NeMo's strided-conv subsampling, its lengths, masking and shapes."""

import pytest
import torch

from myna.nn.subsampling import ConvSubsampling, conv_output_lengths


def test_subsampled_lengths_follow_nemo_formula():
    lengths = torch.tensor([250, 154, 1, 7])
    assert conv_output_lengths(lengths, 2, 3, 2, 2).tolist() == [63, 39, 1, 2]
    assert conv_output_lengths(lengths, 2, 3, 2, 3).tolist() == [32, 20, 1, 1]
    causal = ConvSubsampling("striding", 4, feat_in=16, feat_out=8, conv_channels=4, is_causal=True)
    assert causal.output_lengths(lengths).tolist() == [64, 40, 1, 3]  # floor(L/2)+1 twice


@pytest.mark.parametrize("method, factor", [("striding", 2), ("striding", 4), ("dw_striding", 4),
                                            ("dw_striding", 8)])
def test_output_shape_and_lengths_follow_the_factor(method, factor):
    torch.manual_seed(0)
    sub = ConvSubsampling(method, factor, feat_in=20, feat_out=12, conv_channels=6).eval()
    lengths = torch.tensor([50, 31])
    y, out_lengths = sub(torch.randn(2, 50, 20), lengths)
    # each stride-2 conv: L -> floor((L + 2 - 3) / 2) + 1 = ceil(L / 2)
    expected = [-(-n // factor) for n in lengths.tolist()]
    assert out_lengths.tolist() == expected and out_lengths.dtype == torch.int64
    assert y.shape == (2, expected[0], 12)


@pytest.mark.parametrize("method", ["striding", "dw_striding"])
def test_frames_past_the_length_do_not_change_valid_outputs(method):
    torch.manual_seed(1)
    sub = ConvSubsampling(method, 4, feat_in=16, feat_out=8, conv_channels=4).eval()
    x = torch.randn(1, 40, 16)
    noisy = x.clone()
    noisy[:, 23:] = 50.0 * torch.randn(1, 17, 16)
    with torch.no_grad():
        clean, n = sub(x, torch.tensor([23]))
        dirty, _ = sub(noisy, torch.tensor([23]))
    valid = int(n[0])
    torch.testing.assert_close(dirty[:, :valid], clean[:, :valid])
    torch.testing.assert_close(sub(x[:, :23], torch.tensor([23]))[0], clean[:, :valid])


def test_masked_relu_gradient_equals_the_plain_composition():
    torch.manual_seed(2)
    sub = ConvSubsampling("striding", 4, feat_in=16, feat_out=8, conv_channels=4)
    x = torch.randn(2, 30, 16, requires_grad=True)
    lengths = torch.tensor([30, 17])
    y, _ = sub(x, lengths)
    (y * torch.linspace(-1, 1, 8)).sum().backward()
    grad = x.grad.clone()
    # the same network written with torch ops only: mask, conv, relu, mask, ...
    x2 = x.detach().clone().requires_grad_()
    h, cur = x2.unsqueeze(1), lengths
    for layer in sub.conv:
        if isinstance(layer, torch.nn.Conv2d):
            h = layer(h * (torch.arange(h.size(2))[None, :] < cur[:, None]).float()[:, None, :, None])
            cur = conv_output_lengths(cur, 2, 3, 2)
        else:
            h = torch.relu(h) * (torch.arange(h.size(2))[None, :] < cur[:, None]).float()[:, None, :, None]
    b, c, t, f = h.shape
    y2 = sub.out(h.transpose(1, 2).reshape(b, t, c * f))
    (y2 * torch.linspace(-1, 1, 8)).sum().backward()
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(grad, x2.grad)


@pytest.mark.parametrize("kwargs, message", [
    (dict(subsampling="vggnet", subsampling_factor=4), "vggnet"),
    (dict(subsampling="fancy", subsampling_factor=4), "fancy"),
    (dict(subsampling="striding", subsampling_factor=6), "power of 2"),
])
def test_unsupported_subsampling_is_a_value_error_naming_it(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvSubsampling(feat_in=16, feat_out=8, conv_channels=4, **kwargs)
