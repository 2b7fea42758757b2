"""Convolutional front-end subsampling for Conformer encoders (NeMo ``ConvSubsampling``).

Two layouts, with NeMo's module indices so ``pre_encode.conv.<i>`` keys load:

- ``striding`` (Conformer): ``log2(factor)`` times [Conv2d 3x3 stride 2, ReLU].
- ``dw_striding`` (FastConformer): Conv2d 3x3 stride 2, ReLU, then ``log2(factor) - 1`` times
  [depthwise Conv2d 3x3 stride 2, pointwise Conv2d 1x1, ReLU].

The (time, feature) plane is treated as an image with one input channel; the output
channels and remaining feature bins are flattened and projected by ``out`` to ``feat_out``.
Frames at or past each utterance's length are zeroed before every layer (as NeMo's
``MaskedConvSequential`` does), so padding never leaks into valid frames.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvSubsampling", "conv_output_lengths", "SUBSAMPLING_METHODS"]

SUBSAMPLING_METHODS = ("striding", "dw_striding")
_NOT_IMPLEMENTED = ("vggnet", "striding_conv1d", "dw_striding_conv1d", "stacking", "stacking_norm")


def conv_output_lengths(
    lengths: torch.Tensor, all_paddings: int, kernel_size: int, stride: int, repeat_num: int = 1
) -> torch.Tensor:
    """Lengths after ``repeat_num`` convolutions, computed in float then floored, as NeMo.

    Each step is ``L = floor((L + all_paddings - kernel_size) / stride) + 1``; with padding 1+1,
    kernel 3, stride 2: 250 -> 125 -> 63 -> 32.

    :param lengths: (B,) integer or float lengths.
    :return: (B,) int64 lengths.
    """
    out = lengths.to(torch.float32)
    for _ in range(repeat_num):
        out = torch.floor((out + (all_paddings - kernel_size)) / stride + 1.0)
    return out.to(torch.int64)


class _PaddedConv2d(nn.Conv2d):
    """Conv2d with explicit (left, right) zero padding on both axes (NeMo ``CausalConv2D`` when causal)."""

    def __init__(self, *args, left: int, right: int, **kwargs) -> None:
        super().__init__(*args, padding=0, **kwargs)
        self.left, self.right = left, right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left, self.right, self.left, self.right)))


class ConvSubsampling(nn.Module):
    """Subsample (B, T, F) features by ``subsampling_factor`` in time with strided 2-D convs.

    :param subsampling: ``"striding"`` (Conformer) or ``"dw_striding"`` (FastConformer).
    :param subsampling_factor: a power of 2 (4 or 8 in NeMo's recipes).
    :param feat_in: input feature bins F (e.g. 80 mels).
    :param feat_out: output width (the encoder's d_model).
    :param conv_channels: channels of every conv (NeMo ``subsampling_conv_channels``).
    :param is_causal: pad (2, 1) instead of (1, 1) so no frame sees the future
        (NeMo ``causal_downsampling``); lengths become ``floor(L / 2) + 1`` per step.

    >>> sub = ConvSubsampling("striding", 4, feat_in=80, feat_out=96, conv_channels=96)
    >>> y, n = sub(torch.randn(2, 251, 80), torch.tensor([250, 154]))
    >>> tuple(y.shape), n.tolist()
    ((2, 63, 96), [63, 39])
    """

    def __init__(
        self,
        subsampling: str,
        subsampling_factor: int,
        feat_in: int,
        feat_out: int,
        conv_channels: int,
        is_causal: bool = False,
    ) -> None:
        super().__init__()
        if subsampling in _NOT_IMPLEMENTED:
            raise ValueError(
                f"subsampling={subsampling!r} is not implemented in myna; use one of {SUBSAMPLING_METHODS}"
            )
        if subsampling not in SUBSAMPLING_METHODS:
            raise ValueError(f"unknown subsampling={subsampling!r}; expected one of {SUBSAMPLING_METHODS}")
        if subsampling_factor < 2 or subsampling_factor & (subsampling_factor - 1):
            raise ValueError(f"subsampling_factor={subsampling_factor} must be a power of 2 (>= 2)")
        self.subsampling = subsampling
        self.subsampling_factor = subsampling_factor
        self.is_causal = is_causal
        self._sampling_num = int(math.log2(subsampling_factor))
        self._kernel_size, self._stride = 3, 2
        self._left, self._right = (2, 1) if is_causal else (1, 1)

        def strided(in_ch: int, out_ch: int, groups: int = 1) -> nn.Conv2d:
            if is_causal:
                return _PaddedConv2d(in_ch, out_ch, 3, stride=2, groups=groups, left=2, right=1)
            return nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1, groups=groups)

        layers = []
        if subsampling == "striding":
            in_ch = 1
            for _ in range(self._sampling_num):
                layers += [strided(in_ch, conv_channels), nn.ReLU()]
                in_ch = conv_channels
        else:  # dw_striding
            layers += [strided(1, conv_channels), nn.ReLU()]
            for _ in range(self._sampling_num - 1):
                layers += [
                    strided(conv_channels, conv_channels, groups=conv_channels),
                    nn.Conv2d(conv_channels, conv_channels, kernel_size=1),
                    nn.ReLU(),
                ]
        self.conv = nn.Sequential(*layers)
        freq_out = feat_in  # plain Python so that building on the meta device works
        for _ in range(self._sampling_num):
            freq_out = math.floor((freq_out + self._left + self._right - self._kernel_size) / self._stride) + 1
        self.out = nn.Linear(conv_channels * freq_out, feat_out)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) input lengths -> (B,) int64 subsampled lengths."""
        return conv_output_lengths(
            lengths, self._left + self._right, self._kernel_size, self._stride, self._sampling_num
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Subsample.

        :param x: (B, T, F) float features.
        :param lengths: (B,) int valid frames per utterance.
        :return: ``(y, out_lengths)``: (B, T', feat_out) float and (B,) int64, with
            ``T' = output_lengths(T)``.
        """
        cur = lengths.to(torch.int64)
        h = x.unsqueeze(1) * _time_mask(cur, x.size(1), x.dtype)  # (B, 1, T, F)
        masked = True
        for layer in self.conv:
            if isinstance(layer, nn.ReLU):
                # ReLU then zeroing padded frames in one autograd node; every conv is followed by
                # a ReLU before any time-mixing conv, so masking here equals masking before each layer
                h = _MaskedReLU.apply(h, _time_mask(cur, h.size(2), h.dtype))
                masked = True
                continue
            if not masked:
                h = h * _time_mask(cur, h.size(2), h.dtype)
            h = layer(h)
            masked = False
            if isinstance(layer, nn.Conv2d) and layer.stride != (1, 1):
                cur = conv_output_lengths(cur, self._left + self._right, self._kernel_size, self._stride)
        if not masked:
            h = h * _time_mask(cur, h.size(2), h.dtype)
        b, c, t, f = h.size()
        y = self.out(h.transpose(1, 2).reshape(b, t, c * f))
        return y, self.output_lengths(lengths)


def _time_mask(lengths: torch.Tensor, time: int, dtype: torch.dtype) -> torch.Tensor:
    """(B,) lengths -> (B, 1, T, 1) multiplicative mask, 1 for frames < length."""
    valid = torch.arange(time, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
    return valid.to(dtype)[:, None, :, None]


class _MaskedReLU(torch.autograd.Function):
    """``relu(x) * mask`` for (B, C, T, F) ``x`` and a (B, 1, T, 1) 0/1 ``mask``, with the gradient
    ``grad * (out > 0)`` (exactly the composite's, as masked outputs are 0) in one pass.

    Works in place on ``x`` (a conv output, which the conv's backward does not need), which
    saves allocating (and page-faulting) another tensor of the largest activation's size."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = x.relu_().mul_(mask)
        ctx.mark_dirty(out)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> Tuple[torch.Tensor, None]:
        (out,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, out, 0), None
