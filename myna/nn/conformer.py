"""Conformer and FastConformer encoders with NeMo's ``ConformerEncoder`` layout and numbers.

A Conformer layer (arXiv:2005.08100) is a macaron of two half-step feed-forward modules
around self-attention and a convolution module, each pre-LayerNormed and residual, with a
final LayerNorm:

    x = x + 0.5 * FF1(LN(x));  x = x + MHSA(LN(x));  x = x + Conv(LN(x))
    x = x + 0.5 * FF2(LN(x));  x = LN(x)

The encoder subsamples the features with strided convolutions first
(:class:`~myna.nn.subsampling.ConvSubsampling`), scales by ``sqrt(d_model)`` and uses
Transformer-XL relative positions (``rel_pos``) or absolute ones (``abs_pos``). Parameter
names equal NeMo's state-dict keys without the ``encoder.`` prefix, so a NeMo checkpoint's
encoder slice loads with ``strict=True``.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from myna.nn.attention import (
    MultiHeadAttention,
    PositionalEncoding,
    RelPositionalEncoding,
    RelPositionMultiHeadAttention,
)
from myna.nn.subsampling import ConvSubsampling

__all__ = [
    "ConformerConvolution",
    "ConformerEncoder",
    "ConformerFeedForward",
    "ConformerLayer",
    "make_attention_masks",
    "stochastic_depth_drop_probs",
]


class ConformerEncoder(nn.Module):
    """NeMo-compatible Conformer / FastConformer encoder on (batch, time, feature) tensors.

    Features are subsampled in time by ``subsampling_factor``, scaled by ``sqrt(d_model)``,
    and passed through ``n_layers`` Conformer layers that ignore padded frames (attention
    mask and convolution padding mask). Arguments carry NeMo's ``encoder:`` key names and
    defaults; :mod:`myna.interop.adapter` builds the encoder from such a section (and names the
    NeMo keys it ignores and why). Unsupported values raise ``ValueError`` naming the option.

    >>> enc = ConformerEncoder(feat_in=80, n_layers=2, d_model=96, n_heads=4, conv_kernel_size=15)
    >>> y, n = enc.eval()(torch.randn(2, 251, 80), torch.tensor([250, 154]))
    >>> tuple(y.shape), n.tolist()
    ((2, 63, 96), [63, 39])

    :param feat_in: input feature bins (80 mels).
    :param n_layers: Conformer layers (NeMo large: 17, FastConformer large: 17).
    :param d_model: model width.
    :param feat_out: if > 0 and != d_model, a final linear ``out_proj`` to this width.
    :param causal_downsampling: causal padding in the subsampling convs (streaming models).
    :param subsampling: ``"striding"`` (Conformer), ``"dw_striding"`` (FastConformer), or
        ``None`` for a plain linear ``pre_encode`` without subsampling.
    :param subsampling_factor: time reduction, a power of 2; 1 means no subsampling.
    :param subsampling_conv_channels: channels in the subsampling convs; -1 means d_model.
    :param ff_expansion_factor: feed-forward hidden size is ``d_model * ff_expansion_factor``.
    :param self_attention_model: ``"rel_pos"`` (Transformer-XL) or ``"abs_pos"``.
    :param n_heads: attention heads.
    :param att_context_size: ``[left, right]`` frames visible to each frame (-1 unlimited), or a
        list of such pairs (multi-lookahead training: one is drawn per training batch with
        ``att_context_probs``; eval uses the first).
    :param att_context_probs: probabilities of the ``att_context_size`` choices.
    :param att_context_style: ``"regular"`` or ``"chunked_limited"``.
    :param xscaling: scale the subsampled input by ``sqrt(d_model)``.
    :param untie_biases: per-layer Transformer-XL biases (True) or one pair shared by all layers.
    :param pos_emb_max_len: initial positional table length; longer inputs extend it.
    :param conv_kernel_size: depthwise kernel (odd; 31 for Conformer, 9 for FastConformer).
    :param conv_norm_type: ``"batch_norm"`` or ``"layer_norm"`` in the convolution module.
    :param conv_context_size: ``None`` (symmetric), ``"causal"`` or ``[left, right]`` with
        ``left + right + 1 == conv_kernel_size``.
    :param use_bias: biases in the linear and conv layers of each Conformer layer.
    :param dropout: dropout on every residual branch and inside the feed-forwards.
    :param dropout_pre_encoder: dropout after subsampling + scaling.
    :param dropout_emb: dropout on the positional embeddings.
    :param dropout_att: dropout on the attention probabilities.
    :param stochastic_depth_drop_prob, stochastic_depth_mode, stochastic_depth_start_layer:
        layer drop in training (arXiv:2102.03216), as NeMo.
    :param gradient_checkpointing: recompute each layer in backward to save activation
        memory (``torch.utils.checkpoint``, non-reentrant). Larger models, slower steps.
    :param use_sdpa: attention via ``F.scaled_dot_product_attention`` (default) or the
        explicit softmax(QK^T) path; the same numbers either way.
    """

    # In inference a row's valid output frames do not depend on the batch's width (masked attention
    # and convolutions; batch norm uses running statistics), so decoding.backends.LengthGroupedEncoder
    # may run a mostly padded batch as groups of rows.
    rows_independent = True

    def __init__(
        self,
        feat_in: int,
        n_layers: int,
        d_model: int,
        feat_out: int = -1,
        causal_downsampling: bool = False,
        subsampling: Optional[str] = "striding",
        subsampling_factor: int = 4,
        subsampling_conv_channels: int = -1,
        ff_expansion_factor: int = 4,
        self_attention_model: str = "rel_pos",
        n_heads: int = 4,
        att_context_size: Optional[Sequence[Any]] = None,
        att_context_probs: Optional[Sequence[float]] = None,
        att_context_style: str = "regular",
        xscaling: bool = True,
        untie_biases: bool = True,
        pos_emb_max_len: int = 5000,
        conv_kernel_size: int = 31,
        conv_norm_type: str = "batch_norm",
        conv_context_size: Optional[Union[str, Sequence[int]]] = None,
        use_bias: bool = True,
        dropout: float = 0.1,
        dropout_pre_encoder: float = 0.1,
        dropout_emb: float = 0.1,
        dropout_att: float = 0.0,
        stochastic_depth_drop_prob: float = 0.0,
        stochastic_depth_mode: str = "linear",
        stochastic_depth_start_layer: int = 1,
        gradient_checkpointing: bool = False,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        if self_attention_model not in ("rel_pos", "abs_pos"):
            raise ValueError(
                f"self_attention_model={self_attention_model!r} is not supported; use 'rel_pos' or 'abs_pos'"
            )
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model = d_model
        self.feat_in = feat_in
        self.n_layers = n_layers
        self.self_attention_model = self_attention_model
        self.gradient_checkpointing = gradient_checkpointing
        self.att_context_style = att_context_style
        self.att_context_size_all, self.att_context_probs = _att_context_sizes(
            att_context_size, att_context_probs, att_context_style
        )
        self.att_context_size = self.att_context_size_all[0]
        conv_context = _conv_context_size(conv_context_size, conv_kernel_size)
        self.xscale = d_model**0.5 if xscaling else None

        # subsampling (pre_encode)
        if subsampling_conv_channels == -1:
            subsampling_conv_channels = d_model
        if subsampling and subsampling_factor > 1:
            self.pre_encode: nn.Module = ConvSubsampling(
                subsampling=subsampling,
                subsampling_factor=subsampling_factor,
                feat_in=feat_in,
                feat_out=d_model,
                conv_channels=subsampling_conv_channels,
                is_causal=causal_downsampling,
            )
            self.subsampling_factor = subsampling_factor
        else:
            self.pre_encode = nn.Linear(feat_in, d_model)
            self.subsampling_factor = 1

        # positions
        if self_attention_model == "rel_pos":
            self.pos_enc: PositionalEncoding = RelPositionalEncoding(
                d_model, dropout_pre_encoder, pos_emb_max_len, self.xscale, dropout_emb
            )
        else:
            self.pos_enc = PositionalEncoding(d_model, dropout_pre_encoder, pos_emb_max_len, self.xscale)
        shared_u = shared_v = None
        if self_attention_model == "rel_pos" and not untie_biases:
            d_head = d_model // n_heads
            shared_u = nn.Parameter(torch.zeros(n_heads, d_head))
            shared_v = nn.Parameter(torch.zeros(n_heads, d_head))

        self.layers = nn.ModuleList(
            ConformerLayer(
                d_model=d_model,
                d_ff=d_model * ff_expansion_factor,
                self_attention_model=self_attention_model,
                n_heads=n_heads,
                conv_kernel_size=conv_kernel_size,
                conv_norm_type=conv_norm_type,
                conv_context_size=conv_context,
                dropout=dropout,
                dropout_att=dropout_att,
                pos_bias_u=shared_u,
                pos_bias_v=shared_v,
                use_bias=use_bias,
                use_sdpa=use_sdpa,
            )
            for _ in range(n_layers)
        )
        if feat_out > 0 and feat_out != d_model:
            self.out_proj: Optional[nn.Linear] = nn.Linear(d_model, feat_out)
            self.output_dim = feat_out
        else:
            self.out_proj = None
            self.output_dim = d_model
        self.layer_drop_probs = stochastic_depth_drop_probs(
            n_layers, stochastic_depth_drop_prob, stochastic_depth_mode, stochastic_depth_start_layer
        )

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) feature lengths -> (B,) int64 encoder output lengths."""
        if isinstance(self.pre_encode, ConvSubsampling):
            return self.pre_encode.output_lengths(lengths)
        return lengths.to(torch.int64)

    def forward(
        self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode.

        :param features: (B, T, feat_in) float, e.g. log-mels; frames past ``lengths`` are ignored.
        :param lengths: (B,) int valid frames per utterance; ``None`` means all T.
        :return: ``(encoded, encoded_lengths)``: (B, T', output_dim) float and (B,) int64, where
            ``T' = output_lengths(T)`` (T/4 for striding x4). Padded output frames hold
            deterministic values (the same ones NeMo computes) and should be ignored.
        """
        if lengths is None:
            lengths = torch.full((features.size(0),), features.size(1), dtype=torch.int64, device=features.device)
        lengths = lengths.to(features.device)
        if isinstance(self.pre_encode, ConvSubsampling):
            x, lengths = self.pre_encode(features, lengths)
        else:
            x, lengths = self.pre_encode(features), lengths.to(torch.int64)

        x, pos_emb = self.pos_enc(x)
        if self.training and len(self.att_context_size_all) > 1:
            context = random.choices(self.att_context_size_all, weights=self.att_context_probs)[0]
        else:
            context = self.att_context_size
        pad_mask, att_mask = make_attention_masks(lengths, x.size(1), context, self.att_context_style)

        for drop_prob, layer in zip(self.layer_drop_probs, self.layers):
            residual = x
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(_CheckpointedLayer(layer), x, att_mask, pos_emb, pad_mask, use_reentrant=False)
            else:
                x = layer(x, att_mask, pos_emb, pad_mask)
            if self.training and drop_prob > 0.0:
                if torch.rand(1).item() < drop_prob:
                    x = x * 0.0 + residual  # keep every parameter in the graph (DDP)
                else:
                    x = (x - residual) / (1.0 - drop_prob) + residual

        if self.out_proj is not None:
            x = self.out_proj(x)
        return x, lengths


class ConformerLayer(nn.Module):
    """One Conformer block (NeMo ``ConformerLayer`` names): FF/2, MHSA, Conv, FF/2, LayerNorm.

    :param d_model: width; :param d_ff: feed-forward hidden size.
    :param self_attention_model: ``"rel_pos"`` or ``"abs_pos"``.
    :param conv_context_size: ``[left, right]`` padding of the depthwise conv.
    :param pos_bias_u, pos_bias_v: shared Transformer-XL biases, or None for per-layer ones.
    Other parameters as :class:`ConformerEncoder`.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        self_attention_model: str = "rel_pos",
        n_heads: int = 4,
        conv_kernel_size: int = 31,
        conv_norm_type: str = "batch_norm",
        conv_context_size: Optional[Sequence[int]] = None,
        dropout: float = 0.1,
        dropout_att: float = 0.1,
        pos_bias_u: Optional[nn.Parameter] = None,
        pos_bias_v: Optional[nn.Parameter] = None,
        use_bias: bool = True,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        self.fc_factor = 0.5
        self.norm_feed_forward1 = nn.LayerNorm(d_model)
        self.feed_forward1 = ConformerFeedForward(d_model, d_ff, dropout, use_bias)
        self.norm_conv = nn.LayerNorm(d_model)
        self.conv = ConformerConvolution(d_model, conv_kernel_size, conv_norm_type, conv_context_size, use_bias)
        self.norm_self_att = nn.LayerNorm(d_model)
        if self_attention_model == "rel_pos":
            self.self_attn: MultiHeadAttention = RelPositionMultiHeadAttention(
                n_heads, d_model, dropout_att, pos_bias_u, pos_bias_v, use_bias=use_bias, use_sdpa=use_sdpa
            )
        elif self_attention_model == "abs_pos":
            self.self_attn = MultiHeadAttention(n_heads, d_model, dropout_att, use_bias=use_bias, use_sdpa=use_sdpa)
        else:
            raise ValueError(f"self_attention_model={self_attention_model!r} is not supported")
        self.norm_feed_forward2 = nn.LayerNorm(d_model)
        self.feed_forward2 = ConformerFeedForward(d_model, d_ff, dropout, use_bias)
        self.dropout = nn.Dropout(dropout)
        self.norm_out = nn.LayerNorm(d_model)

    def forward(
        self,
        x: torch.Tensor,
        att_mask: Optional[torch.Tensor] = None,
        pos_emb: Optional[torch.Tensor] = None,
        pad_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """:param x: (B, T, D); :param att_mask: (B, T, T) bool, True = may not attend;
        :param pos_emb: (1, 2T-1, D) for rel_pos; :param pad_mask: (B, T) bool, True = padded.
        :return: (B, T, D)."""
        x = torch.add(x, self.dropout(self.feed_forward1(self.norm_feed_forward1(x))), alpha=self.fc_factor)
        x = x + self.dropout(self.self_attn(self.norm_self_att(x), att_mask, pos_emb))
        x = x + self.dropout(self.conv(self.norm_conv(x), pad_mask))
        x = torch.add(x, self.dropout(self.feed_forward2(self.norm_feed_forward2(x))), alpha=self.fc_factor)
        return self.norm_out(x)


class ConformerFeedForward(nn.Module):
    """Linear -> Swish -> Dropout -> Linear (NeMo ``ConformerFeedForward``)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, use_bias: bool = True) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff, bias=use_bias)
        self.activation = nn.SiLU()
        self.dropout = nn.Dropout(p=dropout)
        self.linear2 = nn.Linear(d_ff, d_model, bias=use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d_model) -> (B, T, d_model)."""
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class ConformerConvolution(nn.Module):
    """Pointwise conv -> GLU -> depthwise conv -> norm -> Swish -> pointwise conv.

    Padded frames are zeroed after the GLU so the depthwise conv never reads them. The norm is
    BatchNorm1d or LayerNorm over channels; NeMo stores either as ``batch_norm``.

    :param d_model: channels; :param kernel_size: odd depthwise kernel.
    :param norm_type: ``"batch_norm"`` or ``"layer_norm"``.
    :param conv_context_size: ``[left, right]`` zero padding of the depthwise conv (sums to
        ``kernel_size - 1``); None means symmetric.
    """

    def __init__(
        self,
        d_model: int,
        kernel_size: int,
        norm_type: str = "batch_norm",
        conv_context_size: Optional[Sequence[int]] = None,
        use_bias: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"conv_kernel_size={kernel_size} must be odd")
        if conv_context_size is None:
            conv_context_size = [(kernel_size - 1) // 2] * 2
        self.padding = (int(conv_context_size[0]), int(conv_context_size[1]))
        self.norm_type = norm_type
        self.pointwise_conv1 = nn.Conv1d(d_model, 2 * d_model, kernel_size=1, bias=use_bias)
        self.depthwise_conv = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model, bias=use_bias)
        if norm_type == "batch_norm":
            self.batch_norm: nn.Module = nn.BatchNorm1d(d_model)
        elif norm_type == "layer_norm":
            self.batch_norm = nn.LayerNorm(d_model)
        else:
            raise ValueError(f"conv_norm_type={norm_type!r} is not supported; use 'batch_norm' or 'layer_norm'")
        self.activation = nn.SiLU()
        self.pointwise_conv2 = nn.Conv1d(d_model, d_model, kernel_size=1, bias=use_bias)

    def forward(self, x: torch.Tensor, pad_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:param x: (B, T, D); :param pad_mask: (B, T) bool, True = padded. :return: (B, T, D)."""
        # the kernel-1 convs are applied as linears on (B, T, D): same numbers, fewer transposes
        pw1, pw2, dw = self.pointwise_conv1, self.pointwise_conv2, self.depthwise_conv
        x = F.glu(F.linear(x, pw1.weight.squeeze(-1), pw1.bias), dim=-1)  # (B, T, D)
        if pad_mask is not None:
            x = x.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        x = x.transpose(1, 2)  # (B, D, T)
        if self.padding[0] == self.padding[1]:
            x = F.conv1d(x, dw.weight, dw.bias, padding=self.padding[0], groups=dw.groups)
        else:
            x = dw(F.pad(x, self.padding))
        if self.norm_type == "layer_norm":
            x = self.batch_norm(x.transpose(1, 2))
        else:
            x = self.batch_norm(x).transpose(1, 2)
        return F.linear(self.activation(x), pw2.weight.squeeze(-1), pw2.bias)  # (B, T, D)


def make_attention_masks(
    lengths: torch.Tensor,
    max_time: int,
    att_context_size: Sequence[int] = (-1, -1),
    att_context_style: str = "regular",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Padding and self-attention masks, True marking what must be ignored (NeMo convention).

    ``regular`` limits each frame to ``left`` frames before and ``right`` after (-1: all);
    ``chunked_limited`` splits time into chunks of ``right + 1`` frames, each seeing itself and
    ``left // (right + 1)`` chunks before. Padded frames neither see nor are seen.

    :param lengths: (B,) int valid frames.
    :param max_time: T.
    :return: ``(pad_mask, att_mask)``: (B, T) bool and (B, T, T) bool.
    """
    device = lengths.device
    left, right = int(att_context_size[0]), int(att_context_size[1])
    allowed = torch.ones(max_time, max_time, dtype=torch.bool, device=device)
    if att_context_style == "chunked_limited" and right >= 0:
        chunk = right + 1
        left_chunks = left // chunk if left >= 0 else max_time
        idx = torch.arange(max_time, device=device) // chunk
        diff = idx.unsqueeze(1) - idx.unsqueeze(0)
        allowed = (diff >= 0) & (diff <= left_chunks)
    else:
        if left >= 0:
            allowed = allowed.triu(diagonal=-left)
        if right >= 0 and att_context_style == "regular":
            allowed = allowed.tril(diagonal=right)
    valid = torch.arange(max_time, device=device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    allowed = allowed.unsqueeze(0) & valid.unsqueeze(1) & valid.unsqueeze(2)
    return ~valid, ~allowed


def stochastic_depth_drop_probs(
    num_layers: int, drop_prob: float = 0.0, mode: str = "linear", start_layer: int = 1
) -> List[float]:
    """Per-layer drop probabilities (NeMo ``compute_stochastic_depth_drop_probs``).

    Layers before ``start_layer`` (1-based count of kept layers) never drop; after it the
    probability rises linearly to ``drop_prob`` at the last layer, or is ``drop_prob``
    throughout for ``"uniform"``. E.g. 4 layers, 0.3, linear, start 1: [0, 0.1, 0.2, 0.3].
    """
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"stochastic_depth_drop_prob={drop_prob} must be in [0, 1)")
    if not 1 <= start_layer <= max(num_layers, 1):
        raise ValueError(f"stochastic_depth_start_layer={start_layer} must be in [1, n_layers={num_layers}]")
    if mode not in ("linear", "uniform"):
        raise ValueError(f"stochastic_depth_mode={mode!r} must be 'linear' or 'uniform'")
    probs = [0.0] * start_layer
    rest = num_layers - start_layer
    if rest > 0:
        if mode == "linear":
            probs += [i / rest * drop_prob for i in range(1, rest + 1)]
        else:
            probs += [drop_prob] * rest
    return probs[:num_layers]


class _CheckpointedLayer:
    """Calls a layer for ``torch.utils.checkpoint``; on the backward recomputation BatchNorm
    running statistics are left untouched, so they advance once per step as without it."""

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer
        self.calls = 0

    def __call__(self, *args: Any) -> torch.Tensor:
        self.calls += 1
        ctx = _frozen_batchnorm_stats(self.layer) if self.calls > 1 else contextlib.nullcontext()
        with ctx:
            return self.layer(*args)


@contextlib.contextmanager
def _frozen_batchnorm_stats(module: nn.Module) -> Iterator[None]:
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
            saved.append((m, m.momentum, m.num_batches_tracked.clone()))
            m.momentum = 0.0  # running = 1.0 * running + 0.0 * batch: unchanged
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


def _att_context_sizes(
    att_context_size: Optional[Sequence[Any]],
    att_context_probs: Optional[Sequence[float]],
    style: str,
) -> Tuple[List[List[int]], List[float]]:
    if style not in ("regular", "chunked_limited"):
        raise ValueError(f"att_context_style={style!r} must be 'regular' or 'chunked_limited'")
    if att_context_size:
        sizes = list(att_context_size)
        if isinstance(sizes[0], int):
            sizes = [sizes]
        sizes = [[int(a), int(b)] for a, b in sizes]
    else:
        sizes = [[-1, -1]]
    if style == "chunked_limited":
        for left, right in sizes:
            if left > 0 and left % (right + 1) > 0:
                raise ValueError(f"att_context_size={[left, right]}: left must be a multiple of right + 1")
            if right < 0 and len(sizes) <= 1:
                raise ValueError(f"att_context_size={[left, right]}: chunked_limited needs right >= 0")
    if att_context_probs:
        probs = [float(p) for p in att_context_probs]
        if len(probs) != len(sizes):
            raise ValueError(f"att_context_probs={probs} must have one entry per att_context_size {sizes}")
        if abs(sum(probs) - 1.0) > 1e-6:
            raise ValueError(f"att_context_probs={probs} must sum to 1")
    else:
        probs = [1.0 / len(sizes)] * len(sizes)
    return sizes, probs


def _conv_context_size(conv_context_size: Optional[Union[str, Sequence[int]]], kernel_size: int) -> List[int]:
    if conv_context_size is None:
        return [(kernel_size - 1) // 2] * 2
    if conv_context_size == "causal":
        return [kernel_size - 1, 0]
    if isinstance(conv_context_size, str) or len(conv_context_size) != 2:
        raise ValueError(f"conv_context_size={conv_context_size!r} must be None, 'causal' or [left, right]")
    left, right = int(conv_context_size[0]), int(conv_context_size[1])
    if left + right + 1 != kernel_size:
        raise ValueError(
            f"conv_context_size={[left, right]}: left + right + 1 must equal conv_kernel_size={kernel_size}"
        )
    return [left, right]
