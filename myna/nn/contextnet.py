"""ContextNet encoder: NeMo's ``ConvASREncoder`` built from a ContextNet ``jasper:`` block list.

The encoder is a stack of blocks. A block runs ``repeat`` sub-blocks of (masked depthwise conv ->
masked pointwise conv -> BatchNorm), with activation + dropout between them; the last sub-block is
followed by a Squeeze-and-Excitation layer whose context is the mean over the valid frames. A
residual branch (pointwise conv + BatchNorm, strided when ``residual_mode`` is ``stride_add``) is
added, then the activation and dropout close the block. Every conv first zeroes the frames at or
past each utterance's length, so padding never leaks into valid frames.

Parameter names equal NeMo's state-dict keys minus the leading ``encoder.``
(``encoder.{i}.mconv.{j}.conv.weight``, ``encoder.{i}.res.0.{k}...``), so a NeMo checkpoint loads
with ``strict=True``.

>>> enc = ContextNetEncoder(feat_in=80, blocks=[ContextNetBlockSpec(out_channels=64, repeat=1, kernel_size=5,
...     stride=2, dilation=1, dropout=0.0, residual=False, separable=True, se=True)])
>>> x, lens = enc(torch.randn(2, 100, 80), torch.tensor([100, 61]))
>>> x.shape, lens.tolist()
(torch.Size([2, 50, 64]), [50, 31])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from myna.nn.activations import build_activation
from myna.nn.conformer import _CheckpointedLayer
from myna.nn.init import init_weights

__all__ = ["ContextNetEncoder", "ContextNetBlockSpec", "ContextNetBlock", "MaskedConv1d", "SqueezeExcite"]

_Padding = Union[int, tuple[int, int]]


@dataclass(frozen=True)
class ContextNetBlockSpec:
    """One block of a :class:`ContextNetEncoder` (the typed form of a NeMo ``jasper:`` entry).

    Fields are :class:`ContextNetBlock`'s arguments (``out_channels`` is NeMo's ``filters``);
    ``residual_mode`` None means the encoder's ``residual_mode``.
    """

    out_channels: int
    repeat: int
    kernel_size: int
    stride: int
    dilation: int
    dropout: float
    residual: bool
    residual_mode: Optional[str] = None
    separable: bool = False
    se: bool = False
    se_reduction_ratio: int = 8
    se_context_window: int = -1
    stride_last: bool = False
    future_context: int = -1


class ContextNetEncoder(nn.Module):
    """NeMo ``ConvASREncoder`` (ContextNet / QuartzNet / Citrinet style block lists).

    Arguments carry NeMo's encoder key names; :mod:`myna.interop.adapter` turns a NeMo
    ``encoder:`` section (its ``jasper:`` list included) into them, and rejects the options NeMo
    has but myna does not implement (quantisation, dense residuals, grouped pointwise convs,
    heads, ``conv_mask: false``), naming the key.

    :param feat_in: input feature size (mel bins); multiplied by ``frame_splicing`` as NeMo does.
    :param blocks: the blocks, first to last.
    :param activation: activation name for all blocks and the SE layers (``swish`` for ContextNet).
    :param normalization_mode: ``batch`` (BatchNorm, eps 1e-3), ``group``, ``instance`` or ``layer``.
    :param residual_mode: default residual mode for blocks that do not set one: ``add``,
        ``stride_add`` (the residual conv strides like the block) or ``max``.
    :param norm_groups: groups for ``group`` normalisation; -1 means one group per channel.
    :param frame_splicing: NeMo's frame splicing factor; the encoder input has
        ``feat_in * frame_splicing`` features.
    :param init_mode: weight init of conv/linear layers: ``xavier_uniform``, ``xavier_normal``,
        ``kaiming_uniform``, ``kaiming_normal``, ``tds_uniform``, ``tds_normal`` or None.
    :param gradient_checkpointing: recompute each block in backward instead of keeping its
        activations (``torch.utils.checkpoint``, non-reentrant): less memory, ~1/3 slower steps.
        Not a NeMo key; myna's own switch.
    """

    def __init__(
        self,
        feat_in: int,
        blocks: Sequence[ContextNetBlockSpec],
        activation: str = "swish",
        normalization_mode: str = "batch",
        residual_mode: str = "add",
        norm_groups: int = -1,
        frame_splicing: int = 1,
        init_mode: Optional[str] = "xavier_uniform",
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("ContextNetEncoder: the block list is empty")
        self.feat_in = int(feat_in) * int(frame_splicing)
        in_channels = self.feat_in
        modules = []
        factor = 1
        for spec in blocks:
            options = {**asdict(spec), "residual_mode": spec.residual_mode or residual_mode}
            block = ContextNetBlock(in_channels=in_channels, activation=activation, normalization=normalization_mode,
                                    norm_groups=norm_groups, **options)
            modules.append(block)
            factor *= block.stride
            in_channels = block.out_channels
        self.encoder = nn.Sequential(*modules)
        self.output_dim = in_channels
        self.subsampling_factor = factor
        self.gradient_checkpointing = bool(gradient_checkpointing)
        # Whether a row's valid output frames are independent of the batch's width in inference (see
        # ConformerEncoder.rows_independent): group / instance / layer normalisation take statistics
        # over time, padding included.
        self.rows_independent = normalization_mode == "batch"
        self.apply(lambda m: init_weights(m, init_mode))

    @property
    def stride(self) -> int:
        """Time subsampling factor (product of the block strides)."""
        return self.subsampling_factor

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch.

        :param features: (B, T, F) float, F == ``feat_in``; frames at or past ``lengths`` are padding.
        :param lengths: (B,) int64, valid frames per utterance.
        :return: ``(encoded, encoded_lengths)``: (B, T', D) with D == ``output_dim`` and
            T' = ceil(T / stride) for the usual kernel-5 'same' convs; (B,) int64 lengths
            (ceil(L / 2) per stride-2 block). T' may exceed ``encoded_lengths.max()``; frames past
            a length are not zero (as in NeMo).
        """
        if features.dim() != 3 or features.size(-1) != self.feat_in:
            raise ValueError(
                f"ContextNetEncoder expects features (B, T, {self.feat_in}), got {tuple(features.shape)}"
            )
        x = features.transpose(1, 2)  # (B, F, T): convolutions run channels-first
        lengths = lengths.to(device=x.device, dtype=torch.long)
        for block in self.encoder:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x, lengths = checkpoint(_CheckpointedLayer(block), x, lengths, use_reentrant=False)
            else:
                x, lengths = block(x, lengths)
        return x.transpose(1, 2), lengths


class ContextNetBlock(nn.Module):
    """One NeMo ``JasperBlock``: ``repeat`` (separable) conv sub-blocks, SE, residual, activation.

    ``mconv`` holds, per sub-block, [depthwise conv, pointwise conv, norm] (or [conv, norm] when not
    separable), followed by [activation, dropout] between sub-blocks and by ``SqueezeExcite`` at the
    end; ``res`` holds ``[[pointwise conv, norm]]``; ``mout`` is [activation, dropout]. The indices
    therefore match NeMo's keys (e.g. ``mconv.5`` is the second depthwise conv when repeat >= 2).

    :param in_channels: input channels C_in.
    :param out_channels: output channels C (``filters``).
    :param repeat: number of conv sub-blocks.
    :param kernel_size: conv kernel (odd, after ``kernel_size_factor``).
    :param stride: conv stride; applied by the last sub-block only when ``stride_last``, else by all.
    :param dilation: conv dilation (stride and dilation cannot both exceed 1).
    :param dropout: dropout probability after each activation.
    :param activation: activation name.
    :param residual: add the residual branch.
    :param residual_mode: ``add``, ``stride_add`` (residual conv strides by ``stride``) or ``max``.
    :param separable: depthwise (groups = C_in) + pointwise conv instead of one full conv.
    :param normalization: ``batch``, ``group``, ``instance`` or ``layer``.
    :param norm_groups: groups for ``group`` normalisation (-1: one per channel).
    :param se: add Squeeze-and-Excitation after the last sub-block.
    :param se_reduction_ratio: SE hidden size is C // ratio; larger ratio, fewer parameters.
    :param se_context_window: -1 for global context; > 0 averages a random window of that many
        frames in training (the whole utterance in eval), as NeMo does.
    :param stride_last: only the last sub-block strides.
    :param future_context: -1 for symmetric 'same' padding, else right context frames
        (asymmetric padding ``(K - 1 - future_context, future_context)``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        repeat: int = 3,
        kernel_size: int = 11,
        stride: int = 1,
        dilation: int = 1,
        dropout: float = 0.2,
        activation: str = "relu",
        residual: bool = True,
        residual_mode: str = "add",
        separable: bool = False,
        normalization: str = "batch",
        norm_groups: int = 1,
        se: bool = False,
        se_reduction_ratio: int = 16,
        se_context_window: int = -1,
        stride_last: bool = False,
        future_context: int = -1,
    ) -> None:
        super().__init__()
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        if residual_mode not in ("add", "stride_add", "max"):
            raise ValueError(f"residual_mode must be 'add', 'stride_add' or 'max', got {residual_mode!r}")
        padding = _conv_padding(kernel_size, stride, dilation, future_context)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.residual_mode = residual_mode
        self.stride = stride if stride_last or repeat == 1 else stride**repeat

        layers: list[nn.Module] = []
        channels = in_channels
        for sub in range(repeat):
            last = sub == repeat - 1
            sub_stride = stride if (last or not stride_last) else 1
            layers += _conv_norm(
                channels, out_channels, kernel_size, sub_stride, dilation, padding, separable,
                normalization, norm_groups,
            )
            if not last:
                layers += [build_activation(activation), nn.Dropout(dropout)]
            channels = out_channels
        if se:
            layers.append(
                SqueezeExcite(out_channels, se_reduction_ratio, se_context_window, build_activation(activation))
            )
        self.mconv = nn.ModuleList(layers)

        if residual:
            res_stride = stride if residual_mode == "stride_add" else 1
            branch = _conv_norm(in_channels, out_channels, 1, res_stride, 1, 0, False, normalization, norm_groups)
            self.res: Optional[nn.ModuleList] = nn.ModuleList([nn.ModuleList(branch)])
        else:
            self.res = None
        self.mout = nn.Sequential(build_activation(activation), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:param x: (B, C_in, T) float. :param lengths: (B,) int64.
        :return: (B, C, T') float and (B,) int64 lengths after the block's stride."""
        out, out_lengths = x, lengths
        for layer in self.mconv:
            if isinstance(layer, (MaskedConv1d, SqueezeExcite)):
                out, out_lengths = layer(out, out_lengths)
            else:
                out = layer(out)
        if self.res is not None:
            res = x
            for layer in self.res[0]:
                if isinstance(layer, MaskedConv1d):
                    res, _ = layer(res, lengths)
                else:
                    res = layer(res)
            out = torch.maximum(out, res) if self.residual_mode == "max" else out + res
        return self.mout(out), out_lengths


class MaskedConv1d(nn.Module):
    """A ``Conv1d`` (held as ``.conv``, bias-free by default) that zeroes padded frames first.

    :param padding: int (symmetric) or (left, right) for asymmetric padding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: _Padding = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(padding, (tuple, list)):
            self.pad: Optional[tuple[int, int]] = (int(padding[0]), int(padding[1]))
            conv_padding = 0
        else:
            self.pad = None
            conv_padding = int(padding)
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, padding=conv_padding,
            dilation=dilation, groups=groups, bias=bias,
        )
        self._total_pad = sum(self.pad) if self.pad is not None else 2 * conv_padding

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) int64 lengths after this conv: unchanged for stride-1 'same' padding, else
        floor((L + pad_left + pad_right - dilation * (K - 1) - 1) / stride) + 1."""
        stride, dilation, kernel = self.conv.stride[0], self.conv.dilation[0], self.conv.kernel_size[0]
        span = dilation * (kernel - 1)
        if stride == 1 and self._total_pad == span:
            return lengths
        return torch.div(lengths + self._total_pad - span - 1, stride, rounding_mode="floor") + 1

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:param x: (B, C_in, T) float. :param lengths: (B,) int64.
        :return: (B, C_out, T') float and (B,) int64 output lengths."""
        x = x * _valid_mask(lengths, x.size(-1)).unsqueeze(1).to(x.dtype)
        if self.pad is not None:
            x = nn.functional.pad(x, self.pad)
        return self.conv(x), self.output_lengths(lengths)


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation over time with masked (global or windowed) average context.

    The context is the mean of the masked input over valid frames (B, C); two bias-free linear
    layers (C -> C // reduction_ratio -> C, activation between) and a sigmoid give per-channel
    gates that scale the masked input. The context is computed in float32 even under autocast.

    :param channels: C.
    :param reduction_ratio: hidden size C // reduction_ratio.
    :param context_window: -1 (or 0): global context. > 0: in training, the mean over a random
        window of that many frames (global if the input is shorter); in eval, global (as NeMo).
    :param activation: module between the two linear layers (NeMo uses the encoder activation).
    """

    def __init__(
        self,
        channels: int,
        reduction_ratio: int,
        context_window: int = -1,
        activation: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        hidden = channels // reduction_ratio
        if hidden < 1:
            raise ValueError(f"SqueezeExcite: channels {channels} // reduction_ratio {reduction_ratio} is 0")
        self.context_window = int(context_window)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            activation if activation is not None else nn.ReLU(),
            nn.Linear(hidden, channels, bias=False),
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:param x: (B, C, T) float. :param lengths: (B,) int64.
        :return: (B, C, T) gated input, zero past each length; ``lengths`` unchanged."""
        valid = _valid_mask(lengths, x.size(-1)).unsqueeze(1)  # (B, 1, T)
        x = x.masked_fill(~valid, 0.0)
        xf, validf = x.float(), valid.float()
        steps = x.size(-1)
        if self.training and 0 < self.context_window <= steps - 1:
            start = int(torch.randint(0, steps - self.context_window, (1,)))
            window = slice(start, start + self.context_window)
            context = xf[..., window].sum(-1) / (validf[..., window].sum(-1) + 1e-8)
        else:
            context = xf.sum(-1) / validf.sum(-1).clamp_min(1.0)  # (B, C)
        weight = self.fc[0].weight  # a method, not a tensor, once dynamically quantized (float32 input then)
        with torch.autocast(device_type=x.device.type, enabled=False):
            gates = torch.sigmoid(self.fc(context.to(weight.dtype if isinstance(weight, torch.Tensor) else torch.float32)))
        return x * gates.to(x.dtype).unsqueeze(-1), lengths


# --- helpers -------------------------------------------------------------------------------------

def _valid_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) bool, True for frames t < lengths[b]."""
    return torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def _conv_padding(kernel: int, stride: int, dilation: int, future_context: int) -> _Padding:
    """'same' padding (symmetric) or NeMo's asymmetric padding for a limited future context."""
    if stride > 1 and dilation > 1:
        raise ValueError(f"only stride or dilation may exceed 1, got stride={stride}, dilation={dilation}")
    symmetric = dilation * (kernel - 1) // 2
    if future_context < 0 or kernel <= future_context:
        return symmetric
    if dilation > 1:
        return (dilation * kernel - 1 - dilation * future_context, dilation * future_context)
    return (kernel - 1 - future_context, future_context)


def _norm(normalization: str, channels: int, norm_groups: int) -> nn.Module:
    if normalization == "batch":
        return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.1)
    if normalization == "group":
        return nn.GroupNorm(channels if norm_groups == -1 else norm_groups, channels)
    if normalization == "instance":
        return nn.GroupNorm(channels, channels)
    if normalization == "layer":
        return nn.GroupNorm(1, channels)
    raise ValueError(f"normalization_mode must be batch, group, instance or layer, got {normalization!r}")


def _conv_norm(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int,
    dilation: int,
    padding: _Padding,
    separable: bool,
    normalization: str,
    norm_groups: int,
) -> list[nn.Module]:
    """[depthwise conv, pointwise conv, norm] if separable else [conv, norm]."""
    if separable:
        convs: list[nn.Module] = [
            MaskedConv1d(in_channels, in_channels, kernel, stride, padding, dilation, groups=in_channels),
            MaskedConv1d(in_channels, out_channels, 1),
        ]
    else:
        convs = [MaskedConv1d(in_channels, out_channels, kernel, stride, padding, dilation)]
    return convs + [_norm(normalization, out_channels, norm_groups)]
