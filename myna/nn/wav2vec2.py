"""wav2vec 2.0 building blocks, with the Hourglass Transformer of NVIDIA's recipe.

Parameter names are Hugging Face's (``feature_extractor.conv_layers.0.conv.weight``,
``encoder.layers.0.attention.q_proj.weight``, ...), so an HF state dict loads after stripping
its ``wav2vec2.`` prefix; fairseq / DLE names are translated in :mod:`myna.interop.hf`. The
Hourglass stacks use DLE's names (``encoder.hourglass_layers``, ``encoder.post_layers``,
``encoder.{down,up}sample_layer.linear``).

Data flow (:class:`Wav2Vec2Encoder`)::

    waveform (B, L) -> ConvFeatureEncoder -> (B, C, T) -> FeatureProjection -> (B, T, H)
      [masked frames <- masked_spec_embed]
      -> TransformerEncoder: zero pads; x + PositionalConvEmbedding(x); (post-LN: LayerNorm)
         -> layers [-> pad T to a multiple of k, pool by k -> hourglass_layers -> upsample, crop,
         + residual -> post_layers] (pre-LN: final LayerNorm) -> (B, T, H)

Tensors are (batch, time, channels) throughout; DLE's T x B x C is only a layout difference.

>>> enc = Wav2Vec2Encoder(hidden_size=64, num_layers=4, num_heads=4, intermediate_size=128,
...                       conv_dim=(32,) * 7, pos_conv_kernel=16, pos_conv_groups=4,
...                       hourglass="[1,(2,2),1]")
>>> out = enc.extract(torch.randn(2, 16000), torch.tensor([16000, 12000]))
>>> out.hidden.shape, out.lengths.tolist()
(torch.Size([2, 49, 64]), [49, 37])
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .masking import compute_mask_indices_hf

__all__ = [
    "ConvFeatureEncoder",
    "FeatureProjection",
    "PositionalConvEmbedding",
    "TransformerLayer",
    "TransformerEncoder",
    "Wav2Vec2Encoder",
    "Wav2Vec2Output",
    "parse_hourglass",
    "conv_output_lengths",
    "grad_multiply",
]

DEFAULT_CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
DEFAULT_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)


def conv_output_lengths(lengths: torch.Tensor, kernels: Sequence[int], strides: Sequence[int]) -> torch.Tensor:
    """Frames out of the conv stack for (B,) int64 sample counts: ``floor((L - k) / s) + 1`` per layer."""
    for kernel, stride in zip(kernels, strides):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths


def parse_hourglass(spec: Optional[str | Sequence]) -> Optional[tuple[int, int, int, int]]:
    """NVIDIA's ``--hourglass_transformer`` literal ``"[n_pre,(n_hourglass,k),n_post]"`` ->
    ``(n_pre, n_hourglass, k, n_post)``; None or "" -> None (plain stack).

    >>> parse_hourglass("[2,(8,4),2]")
    (2, 8, 4, 2)
    """
    if spec is None or spec == "":
        return None
    try:
        value = ast.literal_eval(spec) if isinstance(spec, str) else spec
        n_pre, (n_hourglass, factor), n_post = value
        parsed = tuple(int(v) for v in (n_pre, n_hourglass, factor, n_post))
    except (ValueError, SyntaxError, TypeError) as err:
        raise ValueError(f"hourglass={spec!r} must look like \"[n_pre,(n_hourglass,k),n_post]\"") from err
    if min(parsed) < 0 or parsed[2] < 1:
        raise ValueError(f"hourglass={spec!r}: layer counts must be >= 0 and the factor k >= 1")
    return parsed


class _GradMultiply(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def grad_multiply(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward, gradient times ``scale`` backward (fairseq's ``GradMultiply``)."""
    return _GradMultiply.apply(x, scale)


# ---- feature encoder ---------------------------------------------------------------------------

class _ConvLayer(nn.Module):
    """conv -> (GroupNorm over time per channel | LayerNorm over channels | nothing) -> GELU."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int, stride: int, norm: Optional[str], bias: bool):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)
        self.norm_kind = norm
        if norm == "group":
            self.layer_norm = nn.GroupNorm(out_dim, out_dim, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(out_dim, elementwise_affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm_kind == "group":
            x = self.layer_norm(x)
        elif self.norm_kind == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return F.gelu(x)


class ConvFeatureEncoder(nn.Module):
    """Waveform -> frames: a stack of strided 1-D convolutions (20 ms hop with the defaults).

    :param conv_dim: channels per layer (512 x 7 for every published model).
    :param conv_kernel: kernel per layer ((10, 3, 3, 3, 3, 2, 2)).
    :param conv_stride: stride per layer ((5, 2, 2, 2, 2, 2, 2), 320 samples in all).
    :param norm: ``"group"`` (HF ``feat_extract_norm="group"``, fairseq ``extractor_mode=default``:
        GroupNorm(C, C) on the first layer only; Base models) or ``"layer"`` (LayerNorm over
        channels on every layer; large-lv60 models).
    :param conv_bias: biases in the convolutions (False in the published models).
    """

    def __init__(self, conv_dim: Sequence[int] = (512,) * 7, conv_kernel: Sequence[int] = DEFAULT_CONV_KERNEL,
                 conv_stride: Sequence[int] = DEFAULT_CONV_STRIDE, norm: str = "group", conv_bias: bool = False):
        super().__init__()
        if not len(conv_dim) == len(conv_kernel) == len(conv_stride):
            raise ValueError(f"conv_dim {list(conv_dim)}, conv_kernel {list(conv_kernel)} and conv_stride "
                             f"{list(conv_stride)} must have the same length")
        if norm not in ("group", "layer"):
            raise ValueError(f"feature encoder norm={norm!r}: choose 'group' or 'layer'")
        self.kernels, self.strides = tuple(conv_kernel), tuple(conv_stride)
        layers, in_dim = [], 1
        for i, (dim, kernel, stride) in enumerate(zip(conv_dim, conv_kernel, conv_stride)):
            layer_norm = "layer" if norm == "layer" else ("group" if i == 0 else None)
            layers.append(_ConvLayer(in_dim, dim, kernel, stride, layer_norm, conv_bias))
            in_dim = dim
        self.conv_layers = nn.ModuleList(layers)
        self.output_dim = in_dim

    @property
    def receptive_field(self) -> int:
        """Samples seen by one output frame (400 with the defaults)."""
        field_, jump = 1, 1
        for kernel, stride in zip(self.kernels, self.strides):
            field_ += (kernel - 1) * jump
            jump *= stride
        return field_

    @property
    def hop(self) -> int:
        """Samples between output frames (320 with the defaults)."""
        return int(np.prod(self.strides))

    def min_samples(self, frames: int) -> int:
        """Fewest samples that give ``frames`` output frames."""
        return self.receptive_field + (max(frames, 1) - 1) * self.hop

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) int64 samples -> (B,) int64 frames."""
        return conv_output_lengths(lengths, self.kernels, self.strides)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """:param waveform: (B, L) float. :return: (B, C, T) float raw conv features.

        The GroupNorm normalises each channel over the whole padded length (zeros included), as
        HF and fairseq do, so a padded batch row differs slightly from the same audio alone.
        """
        x = waveform.unsqueeze(1)
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nn.Module):
    """LayerNorm over conv channels (its output is the quantizer input) -> Linear to H -> dropout.

    :param in_dim: conv channels C. :param hidden_size: H. :param dropout: fairseq ``dropout_input``
        (HF ``feat_proj_dropout``). :param layer_norm_eps: 1e-5.
    """

    def __init__(self, in_dim: int, hidden_size: int, dropout: float = 0.0, layer_norm_eps: float = 1e-5):
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_dim, eps=layer_norm_eps)
        self.projection = nn.Linear(in_dim, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:param features: (B, T, C). :return: projected (B, T, H), normalised features (B, T, C)."""
        normed = self.layer_norm(features)
        return self.dropout(self.projection(normed)), normed


class PositionalConvEmbedding(nn.Module):
    """Relative positions from a wide grouped convolution with weight normalisation (dim 2).

    ``conv`` is weight-normed through ``torch.nn.utils.parametrizations`` (state-dict keys
    ``conv.parametrizations.weight.original0`` = g (1, 1, K) and ``.original1`` = v (H, H/groups,
    K), as Hugging Face writes them); old-style ``conv.weight_g`` / ``conv.weight_v`` (fairseq, DLE,
    older Hub files) and a plain ``conv.weight`` load too. Output: conv, drop the last frame for
    even K, GELU.

    :param hidden_size: H. :param kernel: K (128). :param groups: conv groups (16).
    """

    def __init__(self, hidden_size: int, kernel: int = 128, groups: int = 16):
        super().__init__()
        conv = nn.Conv1d(hidden_size, hidden_size, kernel_size=kernel, padding=kernel // 2, groups=groups)
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel * hidden_size)))
        nn.init.constant_(conv.bias, 0.0)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.remove_last = kernel % 2 == 0
        self._register_load_state_dict_pre_hook(self._accept_old_weight_norm)

    @staticmethod
    def _accept_old_weight_norm(state_dict, prefix, *args):
        new = prefix + "conv.parametrizations.weight.original"
        for old, index in (("weight_g", 0), ("weight_v", 1)):
            if prefix + "conv." + old in state_dict:
                state_dict[f"{new}{index}"] = state_dict.pop(prefix + "conv." + old)
        plain = prefix + "conv.weight"
        if plain in state_dict and f"{new}1" not in state_dict:
            weight = state_dict.pop(plain)
            state_dict[f"{new}0"] = torch.linalg.vector_norm(weight, dim=(0, 1), keepdim=True)
            state_dict[f"{new}1"] = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:param x: (B, T, H). :return: (B, T, H) positional term (to be added to x)."""
        y = self.conv(x.transpose(1, 2))
        if self.remove_last:
            y = y[:, :, :-1]
        return F.gelu(y).transpose(1, 2)


# ---- Transformer ---------------------------------------------------------------------------------

class _SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections (HF and fairseq names)."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
        """:param x: (B, T, H). :param keep: (B, 1, 1, T) bool, True = key may be attended; None: all."""
        batch, time, hidden = x.shape
        shape = (batch, time, self.num_heads, hidden // self.num_heads)
        q = self.q_proj(x).view(shape).transpose(1, 2)
        k = self.k_proj(x).view(shape).transpose(1, 2)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(batch, time, hidden))


class _FeedForward(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, activation_dropout: float, dropout: float):
        super().__init__()
        self.intermediate_dense = nn.Linear(hidden_size, intermediate_size)
        self.intermediate_dropout = nn.Dropout(activation_dropout)
        self.output_dense = nn.Linear(intermediate_size, hidden_size)
        self.output_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.intermediate_dropout(F.gelu(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


class TransformerLayer(nn.Module):
    """One Transformer block, post-LN (wav2vec 2.0 Base) or pre-LN ("stable layer norm", Large-lv60).

    Post-LN: ``x = LN(x + Drop(Attn(x)))``, ``x = FinalLN(x + FFN(x))``.
    Pre-LN: ``x = x + Drop(Attn(LN(x)))``, ``x = x + FFN(FinalLN(x))``.

    :param hidden_size: H. :param num_heads: attention heads. :param intermediate_size: FFN width.
    :param dropout: residual-branch dropout (HF ``hidden_dropout``, fairseq ``dropout``).
    :param attention_dropout: on attention probabilities. :param activation_dropout: inside the FFN.
    :param layer_norm_first: pre-LN. :param layer_norm_eps: 1e-5.
    """

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, dropout: float = 0.1,
                 attention_dropout: float = 0.1, activation_dropout: float = 0.0, layer_norm_first: bool = False,
                 layer_norm_eps: float = 1e-5):
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.attention = _SelfAttention(hidden_size, num_heads, attention_dropout)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.feed_forward = _FeedForward(hidden_size, intermediate_size, activation_dropout, dropout)
        self.final_layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, x: torch.Tensor, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:param x: (B, T, H). :param keep: (B, 1, 1, T) bool key mask or None. :return: (B, T, H)."""
        if self.layer_norm_first:
            x = x + self.dropout(self.attention(self.layer_norm(x), keep))
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self.dropout(self.attention(x, keep)))
        return self.final_layer_norm(x + self.feed_forward(x))


class _Resampler(nn.Module):
    """Hourglass down- or upsampling by k: ``naive`` (average pool / repeat) or ``linear`` (DLE)."""

    def __init__(self, hidden_size: int, factor: int, mode: str, down: bool):
        super().__init__()
        if mode not in ("naive", "linear"):
            raise ValueError(f"hourglass_resample={mode!r}: choose 'naive' or 'linear'")
        self.factor, self.down = factor, down
        self.linear = None
        if mode == "linear":
            self.linear = (nn.Linear(hidden_size * factor, hidden_size) if down
                           else nn.Linear(hidden_size, hidden_size * factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Down: (B, T, H) with T % k == 0 -> (B, T/k, H). Up: (B, T', H) -> (B, T'k, H).

        Linear resampling is frame-major: down concatenates frames kt..kt+k-1 before the Linear;
        up's output chunk j becomes frame kt+j.
        """
        batch, time, hidden = x.shape
        k = self.factor
        if self.down:
            if self.linear is not None:
                return self.linear(x.reshape(batch, time // k, hidden * k))
            return F.avg_pool1d(x.transpose(1, 2), kernel_size=k, stride=k).transpose(1, 2)
        if self.linear is not None:
            return self.linear(x).reshape(batch, time * k, -1)
        return x.repeat_interleave(k, dim=1)


def _keep_mask(padding_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """(B, T) bool True = pad -> (B, 1, 1, T) bool True = attend, or None when nothing is padded."""
    if padding_mask is None or not bool(padding_mask.any()):
        return None
    return (~padding_mask)[:, None, None, :]


class TransformerEncoder(nn.Module):
    """Positional conv + Transformer stack, plain or Hourglass.

    Hourglass (NVIDIA DLE; ``hourglass="[n_pre,(n_hourglass,k),n_post]"``, post-LN only): after
    the ``layers`` (the pre layers) the sequence is right-padded with zero frames to a multiple
    of k (not re-zeroing the padded frames the pre layers made non-zero), pooled by k, run
    through ``hourglass_layers`` with the pooled padding mask (a short frame is padding only when
    all k frames of its window are), upsampled, cropped back to T, added to the pre layers'
    output (no norm, no dropout) and run through ``post_layers`` with the full-rate mask.

    :param hidden_size: H. :param num_layers: layers of a plain stack (ignored with ``hourglass``).
    :param num_heads, intermediate_size: per layer. :param pos_conv_kernel, pos_conv_groups: the
        positional convolution (128, 16). :param layer_norm_first: pre-LN stack ("stable layer norm").
    :param dropout: after the positional stage and in every residual branch.
    :param attention_dropout, activation_dropout: inside the layers.
    :param layerdrop: probability of skipping a layer in training (all three stacks).
    :param hourglass: NVIDIA's string or a parsed tuple (see :func:`parse_hourglass`), None: plain.
    :param hourglass_resample: ``naive`` or ``linear``.
    :param layer_norm_eps: 1e-5.
    """

    def __init__(self, hidden_size: int = 768, num_layers: int = 12, num_heads: int = 12,
                 intermediate_size: int = 3072, pos_conv_kernel: int = 128, pos_conv_groups: int = 16,
                 layer_norm_first: bool = False, dropout: float = 0.1, attention_dropout: float = 0.1,
                 activation_dropout: float = 0.0, layerdrop: float = 0.0,
                 hourglass: Optional[str | Sequence] = None, hourglass_resample: str = "naive",
                 layer_norm_eps: float = 1e-5):
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.layerdrop = layerdrop
        self.pos_conv_embed = PositionalConvEmbedding(hidden_size, pos_conv_kernel, pos_conv_groups)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

        def stack(n: int) -> nn.ModuleList:
            return nn.ModuleList(TransformerLayer(hidden_size, num_heads, intermediate_size, dropout,
                                                  attention_dropout, activation_dropout, layer_norm_first,
                                                  layer_norm_eps) for _ in range(n))

        self.hourglass = parse_hourglass(hourglass)
        if self.hourglass is None:
            self.layers = stack(num_layers)
            return
        if layer_norm_first:
            raise ValueError("the Hourglass Transformer is post-LN only (layer_norm_first / do_stable_layer_norm "
                             "must be false), as in NVIDIA's recipe")
        n_pre, n_hourglass, self.shorten_factor, n_post = self.hourglass
        self.layers = stack(n_pre)
        self.hourglass_layers = stack(n_hourglass)
        self.post_layers = stack(n_post)
        self.downsample_layer = _Resampler(hidden_size, self.shorten_factor, hourglass_resample, down=True)
        self.upsample_layer = _Resampler(hidden_size, self.shorten_factor, hourglass_resample, down=False)

    @property
    def num_layers(self) -> int:
        """All Transformer layers (pre + hourglass + post)."""
        if self.hourglass is None:
            return len(self.layers)
        return len(self.layers) + len(self.hourglass_layers) + len(self.post_layers)

    def _run(self, layers: nn.ModuleList, x: torch.Tensor, keep: Optional[torch.Tensor], name: str,
             stages: Optional[dict]) -> torch.Tensor:
        for i, layer in enumerate(layers):
            if self.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop:
                continue
            x = layer(x, keep)
            if stages is not None:
                stages[f"{name}_{i}_out"] = x
        return x

    def forward(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor] = None,
                stages: Optional[dict] = None) -> torch.Tensor:
        """:param x: (B, T, H) projected features. :param padding_mask: (B, T) bool, True = pad, or
        None. :param stages: a dict to receive every intermediate (B, T, H) tensor (parity tests,
        ``output_hidden_states``). :return: (B, T, H)."""
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        pos = self.pos_conv_embed(x)
        if stages is not None:
            stages.update(encoder_input_zeroed=x, pos_conv_out=pos)
        x = x + pos
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        if stages is not None:
            stages["encoder_ln"] = x  # the first layer's input (HF's hidden_states[0])
        keep = _keep_mask(padding_mask)
        x = self._run(self.layers, x, keep, "layers", stages)
        if self.hourglass is not None:
            x = self._hourglass(x, padding_mask, stages)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x

    def _hourglass(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor], stages: Optional[dict]) -> torch.Tensor:
        k = self.shorten_factor
        residual = x
        time = x.shape[1]
        extra = (k - time % k) % k
        if extra:
            x = F.pad(x, (0, 0, 0, extra))  # zero frames, counted as padding below
        pooled = None
        if padding_mask is not None:
            padded = F.pad(padding_mask, (0, extra), value=True)
            pooled = padded.view(padded.shape[0], -1, k).all(-1)  # pad only if the whole window is pad
        x = self.downsample_layer(x)
        if stages is not None:
            stages.update(after_pre_layers=residual, after_downsample=x, pooled_padding_mask=pooled)
        x = self._run(self.hourglass_layers, x, _keep_mask(pooled), "hourglass_layers", stages)
        if stages is not None:
            stages["after_hourglass_layers"] = x
        x = self.upsample_layer(x)
        if stages is not None:
            stages["after_upsample"] = x
        x = x[:, :time] + residual
        if stages is not None:
            stages["post_input"] = x
        return self._run(self.post_layers, x, _keep_mask(padding_mask), "post_layers", stages)


# ---- the whole encoder ---------------------------------------------------------------------------

@dataclass
class Wav2Vec2Output:
    """:class:`Wav2Vec2Encoder.extract` results.

    Attributes:
        hidden: (B, T, H) Transformer output (the context vectors).
        lengths: (B,) int64 valid frames.
        extract_features: (B, T, C) LayerNormed conv features (the quantizer's input).
        conv_features: (B, C, T) raw conv-stack output (feature penalty).
        padding_mask: (B, T) bool, True = pad (None when nothing is padded or masks are off).
        mask_time_indices: (B, T) bool frames replaced by the mask embedding, or None.
        stages: intermediate tensors when requested.
    """

    hidden: torch.Tensor
    lengths: torch.Tensor
    extract_features: torch.Tensor
    conv_features: torch.Tensor
    padding_mask: Optional[torch.Tensor]
    mask_time_indices: Optional[torch.Tensor] = None
    stages: dict = field(default_factory=dict)


class Wav2Vec2Encoder(nn.Module):
    """The wav2vec 2.0 network from waveform to context vectors (HF's ``Wav2Vec2Model``).

    Under myna's ASR models it is the ``encoder``: ``forward(audio (B, L) or (B, L, 1), lengths)
    -> (B, T', H), lengths``, and in training it applies fine-tuning masks (HF's
    ``mask_time_prob`` / ``mask_feature_prob``; fairseq's ``mask_prob`` / ``mask_channel_prob``).

    :param hidden_size, num_layers, num_heads, intermediate_size: Transformer sizes (Base: 768,
        12, 12, 3072; Large: 1024, 24, 16, 4096).
    :param conv_dim, conv_kernel, conv_stride, feat_extract_norm, conv_bias: the feature encoder
        (:class:`ConvFeatureEncoder`).
    :param pos_conv_kernel, pos_conv_groups: positional convolution (128, 16).
    :param layer_norm_first: pre-LN Transformer (HF ``do_stable_layer_norm``).
    :param hidden_dropout, attention_dropout, activation_dropout: Transformer dropouts.
    :param feat_proj_dropout: dropout on the projected features (fairseq ``dropout_input``).
    :param layerdrop: LayerDrop probability in training.
    :param hourglass, hourglass_resample: NVIDIA's Hourglass stack (see :class:`TransformerEncoder`).
    :param mask_time_prob, mask_time_length, mask_time_min_masks: training-time span masks over
        frames (replaced by ``masked_spec_embed``), HF's algorithm.
    :param mask_feature_prob, mask_feature_length, mask_feature_min_masks: training-time masks
        over channels (zeroed).
    :param feature_grad_mult: gradient scale into the conv encoder (0.1 in pre-training; 0
        freezes it and runs it without autograd).
    :param freeze_feature_encoder: no gradients for the conv encoder (HF's
        ``freeze_feature_encoder()``; the same as ``feature_grad_mult=0``).
    :param use_attention_mask: mask padded frames in attention (and zero them before the
        positional conv). Hugging Face's feature extractor passes no mask to Base-style
        (group-norm) models, which then treat padding as signal; set False to reproduce that.
    :param final_dropout: dropout on the output (HF ``final_dropout``, before a CTC head).
    :param layer_norm_eps: 1e-5.
    """

    def __init__(self, hidden_size: int = 768, num_layers: int = 12, num_heads: int = 12,
                 intermediate_size: int = 3072, conv_dim: Sequence[int] = (512,) * 7,
                 conv_kernel: Sequence[int] = DEFAULT_CONV_KERNEL, conv_stride: Sequence[int] = DEFAULT_CONV_STRIDE,
                 feat_extract_norm: str = "group", conv_bias: bool = False, pos_conv_kernel: int = 128,
                 pos_conv_groups: int = 16, layer_norm_first: bool = False, hidden_dropout: float = 0.1,
                 attention_dropout: float = 0.1, activation_dropout: float = 0.0, feat_proj_dropout: float = 0.0,
                 layerdrop: float = 0.0, hourglass: Optional[str | Sequence] = None, hourglass_resample: str = "naive",
                 mask_time_prob: float = 0.0, mask_time_length: int = 10, mask_time_min_masks: int = 2,
                 mask_feature_prob: float = 0.0, mask_feature_length: int = 10, mask_feature_min_masks: int = 0,
                 feature_grad_mult: float = 1.0, freeze_feature_encoder: bool = False,
                 use_attention_mask: bool = True, final_dropout: float = 0.0, layer_norm_eps: float = 1e-5):
        super().__init__()
        self.feature_extractor = ConvFeatureEncoder(conv_dim, conv_kernel, conv_stride, feat_extract_norm, conv_bias)
        self.feature_projection = FeatureProjection(self.feature_extractor.output_dim, hidden_size,
                                                    feat_proj_dropout, layer_norm_eps)
        self.masked_spec_embed = nn.Parameter(torch.empty(hidden_size).uniform_())
        self.encoder = TransformerEncoder(hidden_size, num_layers, num_heads, intermediate_size, pos_conv_kernel,
                                          pos_conv_groups, layer_norm_first, hidden_dropout, attention_dropout,
                                          activation_dropout, layerdrop, hourglass, hourglass_resample,
                                          layer_norm_eps)
        self.final_dropout = nn.Dropout(final_dropout)
        self.hidden_size = hidden_size
        self.output_dim = hidden_size
        self.mask_time = (float(mask_time_prob), int(mask_time_length), int(mask_time_min_masks))
        self.mask_feature = (float(mask_feature_prob), int(mask_feature_length), int(mask_feature_min_masks))
        self.feature_grad_mult = 0.0 if freeze_feature_encoder else float(feature_grad_mult)
        self.use_attention_mask = use_attention_mask
        if self.feature_grad_mult == 0.0:
            self.freeze_feature_encoder()

    def freeze_feature_encoder(self) -> None:
        """No gradients for the conv feature encoder (it then runs without autograd)."""
        self.feature_grad_mult = 0.0
        for p in self.feature_extractor.parameters():
            p.requires_grad_(False)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) samples -> (B,) frames."""
        return self.feature_extractor.output_lengths(lengths)

    def conv_features(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, C, T) raw conv features, with ``feature_grad_mult`` applied in training."""
        if self.training and self.feature_grad_mult > 0:
            features = self.feature_extractor(audio)
            return features if self.feature_grad_mult == 1.0 else grad_multiply(features, self.feature_grad_mult)
        with torch.no_grad():
            return self.feature_extractor(audio)

    def extract(self, audio: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                mask_time_indices: Optional[torch.Tensor] = None, apply_training_masks: bool = True,
                return_stages: bool = False) -> Wav2Vec2Output:
        """Every output of the network.

        :param audio: (B, L) float waveform (or (B, L, 1)).
        :param lengths: (B,) int64 valid samples; None: all L.
        :param mask_time_indices: (B, T) bool frames to replace by ``masked_spec_embed`` (pre-training
            passes its own; in evaluation HF applies them too when given).
        :param apply_training_masks: in training and without ``mask_time_indices``, draw HF-style
            time/feature masks when their probabilities are > 0.
        :param return_stages: collect intermediate tensors in ``stages``.
        :return: :class:`Wav2Vec2Output`.
        """
        if audio.dim() == 3:
            audio = audio.squeeze(-1)
        batch, samples = audio.shape
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long, device=audio.device)
        too_short = (lengths < self.feature_extractor.receptive_field).nonzero().flatten().tolist()
        if too_short:
            raise ValueError(f"batch row(s) {too_short} have {[int(lengths[i]) for i in too_short]} samples; the "
                             f"feature encoder needs at least {self.feature_extractor.receptive_field} for one frame")
        conv = self.conv_features(audio)
        frames = conv.shape[-1]
        frame_lengths = self.output_lengths(lengths).clamp(max=frames)
        padding_mask = None
        if self.use_attention_mask and bool((frame_lengths < frames).any()):
            padding_mask = torch.arange(frames, device=audio.device)[None, :] >= frame_lengths[:, None]
        hidden, extract_features = self.feature_projection(conv.transpose(1, 2))
        stages: dict = {}
        if return_stages:
            stages.update(conv_features=conv, features_ln=extract_features, features_proj=hidden)
        if mask_time_indices is None and apply_training_masks and self.training:
            mask_time_indices = self._training_time_mask(batch, frames, frame_lengths, padding_mask, audio.device)
        if mask_time_indices is not None:
            hidden = torch.where(mask_time_indices.unsqueeze(-1), self.masked_spec_embed.to(hidden.dtype), hidden)
        if apply_training_masks and self.training and self.mask_feature[0] > 0:
            hidden = self._channel_mask(hidden)
        hidden = self.encoder(hidden, padding_mask, stages if return_stages else None)
        hidden = self.final_dropout(hidden)
        return Wav2Vec2Output(hidden, frame_lengths, extract_features, conv, padding_mask, mask_time_indices, stages)

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ASR-encoder interface: (B, L) or (B, L, 1) waveform, (B,) samples -> (B, T', H), (B,) frames."""
        out = self.extract(audio, lengths)
        return out.hidden, out.lengths

    def _rng(self) -> np.random.RandomState:
        # Seeded from torch's generator, so masks follow torch.manual_seed like dropout does.
        return np.random.RandomState(int(torch.randint(0, 2**31 - 1, ())))

    def _training_time_mask(self, batch: int, frames: int, frame_lengths: torch.Tensor,
                            padding_mask: Optional[torch.Tensor], device) -> Optional[torch.Tensor]:
        prob, length, min_masks = self.mask_time
        if prob <= 0 or frames < length:
            return None
        lengths = frame_lengths.tolist() if padding_mask is not None else None
        mask = compute_mask_indices_hf((batch, frames), prob, length, lengths, min_masks, rng=self._rng())
        return torch.from_numpy(mask).to(device)

    def _channel_mask(self, hidden: torch.Tensor) -> torch.Tensor:
        prob, length, min_masks = self.mask_feature
        batch, frames, channels = hidden.shape
        if channels < length:
            return hidden
        mask = compute_mask_indices_hf((batch, channels), prob, length, None, min_masks, rng=self._rng())
        return hidden.masked_fill(torch.from_numpy(mask).to(hidden.device)[:, None, :], 0.0)
