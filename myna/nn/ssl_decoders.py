"""NeMo's ``ConvASRDecoderReconstruction``: encoder frames -> vectors in the contrastive space.

A 1x1 conv to ``feat_hidden``, then ``stride_layers`` blocks that double (transposed conv) or
halve (strided conv) time, then ``non_stride_layers`` depthwise-separable blocks, then a 1x1
conv to ``feat_out``; one activation module sits between them. Parameter names are NeMo's
(``decoder_layers.<i>``; the activation occupies indices too), so NeMo state dicts load by name.

>>> dec = ConvASRDecoderReconstruction(feat_in=96, feat_out=64, feat_hidden=96)
>>> dec(torch.randn(2, 68, 96)).shape
torch.Size([2, 68, 64])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvASRDecoderReconstruction"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "swish": nn.SiLU}
_INITS = {"xavier_uniform": nn.init.xavier_uniform_, "xavier_normal": nn.init.xavier_normal_,
          "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
          "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")}


class ConvASRDecoderReconstruction(nn.Module):
    """Convolutional reconstruction head of NeMo's SSL models.

    :param feat_in: D, encoder output size.
    :param feat_out: output size (the contrastive ``proj_dim``, or spectrogram bins x steps).
    :param feat_hidden: channels of the hidden layers.
    :param stride_layers: blocks that change time by 2 (up with ``stride_transpose``, else down);
        each is activation -> depthwise (transposed) conv of ``kernel_size`` -> 1x1 -> BatchNorm.
    :param non_stride_layers: blocks of activation -> depthwise conv -> 1x1 -> BatchNorm.
    :param kernel_size: odd, >= 3 when any block exists.
    :param init_mode: weight init of convs (NeMo's ``init_weights`` modes); biases start at 0.
    :param activation: ``relu`` (NeMo's default), ``tanh``, ``gelu``, ``silu``/``swish``.
    :param stride_transpose: stride blocks upsample (True) or downsample.
    :param apply_softmax: log-softmax the output.
    """

    def __init__(self, feat_in: int, feat_out: int, feat_hidden: int, stride_layers: int = 0,
                 non_stride_layers: int = 0, kernel_size: int = 11, init_mode: str = "xavier_uniform",
                 activation: str = "relu", stride_transpose: bool = True, apply_softmax: bool = False) -> None:
        super().__init__()
        if stride_layers + non_stride_layers > 0 and (kernel_size < 3 or kernel_size % 2 == 0):
            raise ValueError(f"ConvASRDecoderReconstruction: kernel_size={kernel_size} must be odd and >= 3 "
                             "when stride_layers or non_stride_layers are used")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"ConvASRDecoderReconstruction: activation={activation!r}; one of {sorted(_ACTIVATIONS)}")
        if init_mode not in _INITS:
            raise ValueError(f"ConvASRDecoderReconstruction: init_mode={init_mode!r}; one of {sorted(_INITS)}")
        act = _ACTIVATIONS[activation]()
        h = feat_hidden
        layers: list[nn.Module] = [nn.Conv1d(feat_in, h, 1)]
        for _ in range(stride_layers):
            if stride_transpose:
                conv = nn.ConvTranspose1d(h, h, kernel_size, stride=2, padding=(kernel_size - 3) // 2 + 1,
                                          output_padding=1, groups=h)
            else:
                conv = nn.Conv1d(h, h, kernel_size, stride=2, padding=(kernel_size - 1) // 2, groups=h)
            layers += [act, conv, nn.Conv1d(h, h, 1), nn.BatchNorm1d(h, eps=1e-3, momentum=0.1)]
        for _ in range(non_stride_layers):
            layers += [act, nn.Conv1d(h, h, kernel_size, padding=kernel_size // 2, groups=h), nn.Conv1d(h, h, 1),
                       nn.BatchNorm1d(h, eps=1e-3, momentum=0.1)]
        layers += [act, nn.Conv1d(h, feat_out, 1)]
        self.decoder_layers = nn.Sequential(*layers)
        self.feat_in, self.feat_out, self.apply_softmax = feat_in, feat_out, apply_softmax
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                _INITS[init_mode](module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, encoder_out: torch.Tensor) -> torch.Tensor:
        """:param encoder_out: (B, T', D) float. :return: (B, T'', feat_out), T'' = T' * 2^s
        (transposed strides) or about T' / 2^s; log-probabilities if ``apply_softmax``."""
        out = self.decoder_layers(encoder_out.transpose(1, 2)).transpose(1, 2)
        return out.log_softmax(-1) if self.apply_softmax else out
