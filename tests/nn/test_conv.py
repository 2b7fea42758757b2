"""The fast CPU convolution paths give conv1d's outputs and gradients."""

import pytest
import torch
from torch.nn import functional as F

from myna.nn.conv import conv1d_module, depthwise_conv1d


@pytest.mark.parametrize("kernel,stride,dilation,padding", [
    (31, 1, 1, (15, 15)), (5, 2, 1, (2, 2)), (3, 1, 2, (2, 2)), (9, 1, 1, (8, 0)), (9, 1, 1, (6, 2)),
])
def test_depthwise_conv_equals_conv1d_with_gradients(kernel, stride, dilation, padding):
    torch.manual_seed(0)
    x_btc = torch.randn(3, 40, 24, requires_grad=True)  # (B, T, C): the layout the Conformer holds
    weight = torch.randn(24, 1, kernel, requires_grad=True)
    bias = torch.randn(24, requires_grad=True)
    got = depthwise_conv1d(x_btc.transpose(1, 2), weight, bias, stride, padding, dilation)
    want = F.conv1d(F.pad(x_btc.transpose(1, 2), padding), weight, bias, stride, 0, dilation, groups=24)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(want)
    got_grads = torch.autograd.grad(got, (x_btc, weight, bias), upstream)
    want_grads = torch.autograd.grad(want, (x_btc, weight, bias), upstream)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


def test_conv1d_module_takes_other_modules_and_full_convs_as_they_are():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 11)
    full = torch.nn.Conv1d(8, 6, 3, padding=1)
    assert torch.equal(conv1d_module(full, x), full(x))
    same = torch.nn.Conv1d(8, 8, 3, padding="same", groups=8)
    assert torch.equal(conv1d_module(same, x), same(x))
    identity = torch.nn.Identity()
    assert conv1d_module(identity, x) is x
