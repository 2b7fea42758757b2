"""Multi-head self-attention with absolute or Transformer-XL relative positions.

Two positional schemes, with NeMo's parameter names so its checkpoints load:

- ``abs_pos``: :class:`PositionalEncoding` adds sinusoids to the input and
  :class:`MultiHeadAttention` is plain scaled dot-product attention.
- ``rel_pos``: :class:`RelPositionalEncoding` returns sinusoids for the relative
  distances ``T-1 .. -(T-1)`` and :class:`RelPositionMultiHeadAttention` scores
  ``(q + u) k^T + rel_shift((q + v) p^T)`` (Transformer-XL, arXiv:1901.02860, sec. 3.3).

Masks follow NeMo's convention: ``True`` marks a forbidden (padded) position. Query
rows with no visible key (padded frames) attend to nothing and output ``linear_out``'s
bias, exactly as NeMo computes them.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MultiHeadAttention",
    "PositionalEncoding",
    "RelPositionMultiHeadAttention",
    "RelPositionalEncoding",
    "rel_shift",
    "sinusoids",
]

# Score given to masked positions (NeMo's INF_VAL); exp(-1e4) underflows to 0 in float32.
MASK_VALUE = -10000.0


def sinusoids(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """Sinusoidal embeddings of (possibly negative) positions, computed in float32.

    Column ``2i`` holds ``sin(pos * 10000^(-2i/d_model))``, column ``2i+1`` the cosine.

    :param positions: (N,) float32 positions.
    :param d_model: embedding size (even).
    :return: (N, d_model) float32.
    """
    div_term = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=positions.device)
        * -(math.log(10000.0) / d_model)
    )
    angles = positions.to(torch.float32).unsqueeze(1) * div_term  # (N, d_model/2)
    pe = torch.zeros(positions.size(0), d_model, dtype=torch.float32, device=positions.device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe


class PositionalEncoding(nn.Module):
    """Absolute sinusoidal positions added to the (optionally sqrt(d_model)-scaled) input.

    The table ``pe`` (1, max_len, d_model) is a non-persistent buffer that grows on demand.

    :param d_model: model width.
    :param dropout_rate: dropout on the output (NeMo's ``dropout_pre_encoder``).
    :param max_len: initial table length (NeMo's ``pos_emb_max_len``); longer inputs extend it.
    :param xscale: multiply the input by this (``sqrt(d_model)``) first; ``None`` for no scaling.
    :param dropout_rate_emb: dropout on the positional embeddings themselves.
    """

    def __init__(
        self,
        d_model: int,
        dropout_rate: float,
        max_len: int = 5000,
        xscale: Optional[float] = None,
        dropout_rate_emb: float = 0.0,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.xscale = xscale
        self.dropout = nn.Dropout(p=dropout_rate)
        self.dropout_emb = nn.Dropout(dropout_rate_emb) if dropout_rate_emb > 0 else None
        self.register_buffer("pe", torch.empty(1, 0, d_model), persistent=False)
        self.extend_pe(max_len)

    def _positions(self, length: int, device: torch.device) -> torch.Tensor:
        return torch.arange(0, length, dtype=torch.float32, device=device)

    def _table_size(self, length: int) -> int:
        return length

    def extend_pe(self, length: int) -> None:
        """Rebuild the table if it is too short for sequences of ``length`` frames."""
        if self.pe.size(1) >= self._table_size(length):
            return
        pe = sinusoids(self._positions(length, self.pe.device), self.d_model)
        self.pe = pe.unsqueeze(0).to(self.pe.dtype)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Scale the input and add absolute positions.

        :param x: (B, T, d_model) float.
        :return: ``(x * xscale + pe[:T], pos_emb)``: (B, T, d_model) and (1, T, d_model).
        """
        self.extend_pe(x.size(1))
        if self.xscale:
            x = x * self.xscale
        pos_emb = self.pe[:, : x.size(1)]
        if self.dropout_emb is not None:
            pos_emb = self.dropout_emb(pos_emb)
        return self.dropout(x + pos_emb), pos_emb


class RelPositionalEncoding(PositionalEncoding):
    """Relative sinusoidal positions for Transformer-XL attention (NeMo ``RelPositionalEncoding``).

    The table holds positions ``L-1, L-2, ..., -(L-1)`` (left context positive). For an input
    of T frames the forward returns the ``2T-1`` rows for ``T-1 .. -(T-1)``; the input itself
    is only scaled, no positions are added to it.

    >>> enc = RelPositionalEncoding(d_model=8, dropout_rate=0.0, max_len=10, xscale=None)
    >>> x, pos = enc(torch.zeros(2, 4, 8))
    >>> pos.shape
    torch.Size([1, 7, 8])
    """

    def _positions(self, length: int, device: torch.device) -> torch.Tensor:
        return torch.arange(length - 1, -length, -1, dtype=torch.float32, device=device)

    def _table_size(self, length: int) -> int:
        return 2 * length - 1

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Scale the input and slice the relative position embeddings.

        :param x: (B, T, d_model) float.
        :return: ``(dropout(x * xscale), pos_emb)``: (B, T, d_model) and (1, 2T-1, d_model),
            where ``pos_emb[:, j]`` embeds the relative position ``T-1-j``.
        """
        length = x.size(1)
        self.extend_pe(length)
        if self.xscale:
            x = x * self.xscale
        center = (self.pe.size(1) - 1) // 2  # index of relative position 0
        pos_emb = self.pe[:, center - length + 1 : center + length]
        if self.dropout_emb is not None:
            pos_emb = self.dropout_emb(pos_emb)
        return self.dropout(x), pos_emb


def rel_shift(x: torch.Tensor) -> torch.Tensor:
    """Turn scores against relative positions into scores against key positions.

    Input column ``j`` of row ``i`` is the score for relative position ``T-1-j``; after the
    shift, column ``k`` of row ``i`` (for ``k < T``) is the score for relative position ``i-k``,
    i.e. key ``k``. Columns ``>= T`` are junk and must be dropped by the caller. Pad one zero
    column on the left, fold, drop the first row (the Transformer-XL trick, no gather).

    :param x: (B, H, T, 2T-1) float.
    :return: (B, H, T, 2T-1); only ``[..., :T]`` is meaningful.
    """
    b, h, qlen, pos_len = x.size()
    x = F.pad(x, pad=(1, 0))  # (B, H, T, 2T)
    x = x.view(b, h, -1, qlen)  # (B, H, 2T, T)
    return x[:, :, 1:].reshape(b, h, qlen, pos_len)


def _rel_shift_keys(x: torch.Tensor) -> torch.Tensor:
    """``rel_shift(x)[..., :T]`` as a strided view, without the pad and copies.

    Element ``[b, h, i, k]`` is ``x[b, h, i, T-1-i+k]``, the score of query ``i`` for the relative
    position ``i-k`` (key ``k``); the same numbers :func:`rel_shift` gives.

    :param x: (B, H, T, 2T-1) float.
    :return: (B, H, T, T) view of ``x`` (made contiguous first if it is not).
    """
    if torch.onnx.is_in_onnx_export():  # as_strided with traced sizes does not export; same numbers
        return rel_shift(x)[..., : x.size(2)]
    b, h, qlen, pos_len = x.size()
    x = x.contiguous()
    return x.as_strided((b, h, qlen, qlen), (h * qlen * pos_len, qlen * pos_len, pos_len - 1, 1), x.storage_offset() + qlen - 1)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product self-attention (NeMo ``MultiHeadAttention`` names).

    :param n_head: number of heads; ``n_feat`` must divide evenly.
    :param n_feat: model width.
    :param dropout_rate: dropout on the attention probabilities (NeMo's ``dropout_att``).
    :param use_bias: biases on the q/k/v/out projections (NeMo ``use_bias``).
    :param use_sdpa: compute with ``F.scaled_dot_product_attention`` (same result to float
        rounding); ``False`` spells out softmax(QK^T) as NeMo does.
    """

    def __init__(
        self,
        n_head: int,
        n_feat: int,
        dropout_rate: float = 0.0,
        use_bias: bool = True,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        if n_feat % n_head != 0:
            raise ValueError(f"d_model={n_feat} is not divisible by n_heads={n_head}")
        self.h = n_head
        self.d_k = n_feat // n_head
        self.s_d_k = math.sqrt(self.d_k)
        self.dropout_rate = dropout_rate
        self.use_sdpa = use_sdpa
        self.linear_q = nn.Linear(n_feat, n_feat, bias=use_bias)
        self.linear_k = nn.Linear(n_feat, n_feat, bias=use_bias)
        self.linear_v = nn.Linear(n_feat, n_feat, bias=use_bias)
        self.linear_out = nn.Linear(n_feat, n_feat, bias=use_bias)
        self.dropout = nn.Dropout(p=dropout_rate)

    def _heads(self, linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, H, T, d_k)."""
        return linear(x).view(x.size(0), -1, self.h, self.d_k).transpose(1, 2)

    def _qkv(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``linear_q``, ``linear_k``, ``linear_v`` of ``x`` in one matmul (weights concatenated).

        :param x: (B, T, D) float.
        :return: ``(q, k, v)``, each a (B, T, H, d_k) view.
        """
        weight = torch.cat([self.linear_q.weight, self.linear_k.weight, self.linear_v.weight])
        bias = None
        if self.linear_q.bias is not None:
            bias = torch.cat([self.linear_q.bias, self.linear_k.bias, self.linear_v.bias])
        qkv = F.linear(x, weight, bias).view(x.size(0), x.size(1), 3, self.h, self.d_k)
        return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: Optional[torch.Tensor],
        mask: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """softmax(q k^T / sqrt(d_k) + bias) v with masked positions removed, then ``linear_out``.

        :param q: (B, H, T1, d_k); k, v: (B, H, T2, d_k).
        :param bias: (B, H, T1, T2) additive score bias, already divided by sqrt(d_k), or None.
        :param mask: (B, T1, T2) bool, True = not allowed; or None.
        :return: (B, T1, H*d_k).
        """
        batch = q.size(0)
        mask4 = mask.unsqueeze(1) if mask is not None else None  # (B, 1, T1, T2)
        if self.use_sdpa:
            attn_mask = bias
            if mask4 is not None:
                if attn_mask is None:
                    attn_mask = torch.zeros(mask4.shape, dtype=q.dtype, device=q.device)
                attn_mask = attn_mask.masked_fill(mask4, MASK_VALUE)
            dropout_p = self.dropout_rate if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
            if mask4 is not None:
                # rows that see no key at all (padded frames) give zeros, as in NeMo
                out = out.masked_fill(mask4.all(dim=-1, keepdim=True), 0.0)
        else:
            scores = torch.matmul(q, k.transpose(-2, -1)) / self.s_d_k
            if bias is not None:
                scores = scores + bias
            if mask4 is not None:
                scores = scores.masked_fill(mask4, MASK_VALUE)
                attn = torch.softmax(scores, dim=-1).masked_fill(mask4, 0.0)
            else:
                attn = torch.softmax(scores, dim=-1)
            out = torch.matmul(self.dropout(attn), v)
        out = out.transpose(1, 2).reshape(batch, -1, self.h * self.d_k)
        return self.linear_out(out)

    def forward(
        self,
        x: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        pos_emb: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Self-attention over ``x``.

        :param x: (B, T, D) float.
        :param mask: (B, T, T) bool, True where query t1 may not see key t2; or None.
        :param pos_emb: ignored (absolute positions are already in ``x``).
        :return: (B, T, D).
        """
        q, k, v = (t.transpose(1, 2) for t in self._qkv(x))  # (B, H, T, d_k)
        return self._attend(q, k, v, None, mask)


class RelPositionMultiHeadAttention(MultiHeadAttention):
    """Transformer-XL self-attention with relative positions (NeMo ``RelPositionMultiHeadAttention``).

    Scores are ``((q+u) k^T + rel_shift((q+v) W_pos p^T)) / sqrt(d_k)`` where ``u`` and ``v``
    are the learned per-head biases ``pos_bias_u``/``pos_bias_v`` (H, d_k) and ``p`` the
    relative sinusoids from :class:`RelPositionalEncoding`. The position term enters scaled
    dot-product attention as an additive float mask.

    :param pos_bias_u, pos_bias_v: shared (H, d_k) parameters when biases are tied across
        layers (NeMo ``untie_biases=False``); ``None`` creates this layer's own, zero-initialised.
    Other parameters as :class:`MultiHeadAttention`.

    >>> att = RelPositionMultiHeadAttention(n_head=2, n_feat=8)
    >>> _, pos = RelPositionalEncoding(8, 0.0, max_len=16)(torch.zeros(1, 5, 8))
    >>> att(torch.randn(1, 5, 8), None, pos).shape
    torch.Size([1, 5, 8])
    """

    def __init__(
        self,
        n_head: int,
        n_feat: int,
        dropout_rate: float = 0.0,
        pos_bias_u: Optional[nn.Parameter] = None,
        pos_bias_v: Optional[nn.Parameter] = None,
        use_bias: bool = True,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__(n_head, n_feat, dropout_rate, use_bias=use_bias, use_sdpa=use_sdpa)
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        if pos_bias_u is None or pos_bias_v is None:
            pos_bias_u = nn.Parameter(torch.zeros(self.h, self.d_k))
            pos_bias_v = nn.Parameter(torch.zeros(self.h, self.d_k))
        self.pos_bias_u = pos_bias_u
        self.pos_bias_v = pos_bias_v

    def forward(
        self,
        x: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        pos_emb: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Self-attention over ``x`` with relative positions.

        :param x: (B, T, D) float.
        :param mask: (B, T, T) bool, True where query t1 may not see key t2; or None.
        :param pos_emb: (1 or B, 2T-1, D) relative position embeddings for ``T-1 .. -(T-1)``.
        :return: (B, T, D).
        """
        if pos_emb is None:
            raise ValueError("RelPositionMultiHeadAttention needs pos_emb, got None")
        q, k, v = self._qkv(x)  # (B, T, H, d_k)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, d_k)
        p = self._heads(self.linear_pos, pos_emb) / self.s_d_k  # (1, H, 2T-1, d_k), pre-scaled
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (B, H, T, d_k)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        matrix_bd = _rel_shift_keys(torch.matmul(q_v, p.transpose(-2, -1)))  # (B, H, T, T)
        return self._attend(q_u, k, v, matrix_bd, mask)
