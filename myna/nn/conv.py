"""Convolutions through the fastest CPU kernels PyTorch has for them, with ``Conv1d``'s arithmetic.

oneDNN's depthwise ``Conv1d`` path on CPU is many times slower than its depthwise kernel for
channels-last 2-D input (forward 5-15x at Conformer and ContextNet sizes, forward + backward
3-5x), and a 1x1 ``Conv1d`` is one matrix product over (B*T, C) rows. Other devices use
``conv1d`` as it is.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["depthwise_conv1d", "conv1d_module"]


def depthwise_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, stride: int = 1,
                     padding: tuple[int, int] = (0, 0), dilation: int = 1) -> torch.Tensor:
    """Depthwise 1-D convolution (one filter per channel, ``groups = C``).

    Args:
        x: (B, C, T) float (any strides; a transposed (B, T, C) tensor is read without a copy).
        weight: (C, 1, K) float. bias: (C,) or None.
        stride, dilation: as ``conv1d``. padding: zeros added (left, right).

    Returns:
        (B, C, T') with T' = (T + left + right - dilation * (K - 1) - 1) // stride + 1; on CPU
        laid out channels-last (strides (T' * C, 1, C)).
    """
    if x.device.type != "cpu":
        if padding[0] != padding[1]:
            return F.conv1d(F.pad(x, padding), weight, bias, stride, 0, dilation, x.shape[1])
        return F.conv1d(x, weight, bias, stride, padding[0], dilation, x.shape[1])
    if padding[0] != padding[1]:
        x, padding = F.pad(x, padding), (0, 0)
    x2d = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (B, C, 1, T)
    out = F.conv2d(x2d, weight.unsqueeze(2), bias, (1, stride), (0, padding[0]), (1, dilation), x.shape[1])
    return out.squeeze(2)


def conv1d_module(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a ``Conv1d`` with zero padding on (B, C_in, T), depthwise and 1x1 convs
    through the faster paths above; anything else (another module, string padding) as it is."""
    if not isinstance(conv, nn.Conv1d) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return conv(x)
    weight = conv.weight  # (C_out, C_in / groups, K)
    if conv.groups == 1 and weight.shape[-1] == 1 and conv.stride[0] == 1 and conv.padding[0] == 0:
        return F.linear(x.transpose(1, 2), weight[:, :, 0], conv.bias).transpose(1, 2)
    if conv.groups == x.shape[1] == weight.shape[0] and weight.shape[1] == 1:
        pad = conv.padding[0]
        return depthwise_conv1d(x, weight, conv.bias, conv.stride[0], (pad, pad), conv.dilation[0])
    return conv(x)
