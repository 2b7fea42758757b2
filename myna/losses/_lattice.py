"""The one lattice recursion behind every RNN-T loss in myna.

Given per-arc log-probabilities ``px`` (symbol arcs) and ``py`` (blank / next-frame arcs) on the
(S+1) x (T+1) lattice, :func:`lattice_scores` returns the total log-probability of all paths from
``[s_begin, t_begin]`` to ``[s_end, t_end]``::

    p[b, s_begin, t_begin] = 0
    regular  (px is (B, S, T+1)):  p[s, t] = logaddexp(p[s-1, t] + px[s-1, t],   p[s, t-1] + py[s, t-1])
    modified (px is (B, S, T)):    p[s, t] = logaddexp(p[s-1, t-1] + px[s-1, t-1], p[s, t-1] + py[s, t-1])

The lattice is stored *skewed* so that both topologies share one loop: wavefront ``k`` holds the
points ``(s, k - s)`` (regular: anti-diagonals) or ``(s, k)`` (modified: columns), indexed by ``s``.
In both topologies every predecessor of a point on wavefront ``k`` lies on wavefront ``k - 1``:
the symbol arc comes from index ``s - 1`` and the blank arc from index ``s``. The forward pass is
therefore one ``add`` and one ``logaddexp`` per wavefront, vectorised over batch and ``s``. The
backward pass runs the mirror recursion for beta and forms the arc occupation probabilities
``exp(alpha + arc + beta - total)`` in one vectorised expression, with no autograd graph over
the loop.

Precision: alpha, beta and the occupancies are computed in float64 whatever the input dtype.
At the sizes of speech (|alpha| ~ 1e3 after a few hundred frames) float32 keeps only ~1e-4 of
absolute precision in alpha and beta, and the rounding of each logaddexp adds up along the
wavefronts: float32 accumulation put gradients ~6e-4 (relative to the largest) off a float64
run at (B, T, S) = (8, 250, 60) and occupancies above 1. In float64 the error left is that of
the float32 inputs (~2e-6), and the loop costs about the same, as its ops are small.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

_NEG_INF = float("-inf")


def lattice_scores(
    px: Tensor,
    py: Tensor,
    boundary: Optional[Tensor] = None,
    return_grad: bool = False,
):
    """Total log-probability of the RNN-T lattice, with analytic gradients.

    Args:
      px: (B, S, T+1) for the regular topology or (B, S, T) for modified/constrained, float;
        ``px[b, s, t]`` is the log-prob of emitting symbol ``s`` (0-based) from point (s, t).
      py: (B, S+1, T), same dtype; ``py[b, s, t]`` is the log-prob of the blank (next-frame)
        arc from point (s, t).
      boundary: optional (B, 4) int64 rows ``[s_begin, t_begin, s_end, t_end]``; default
        ``[0, 0, S, T]``. Paths start at (s_begin, t_begin) and end at (s_end, t_end).
      return_grad: also return the occupation probabilities ``(px_grad, py_grad)``, shaped like
        ``px`` and ``py``: the gradient of ``scores.sum()`` with respect to ``px`` and ``py``.

    Returns:
      scores (B,) in the dtype of ``px`` (``-inf`` when no path exists; its gradient is then 0),
      or ``(scores, (px_grad, py_grad))`` when ``return_grad``.
    """
    if px.ndim != 3 or py.ndim != 3:
        raise ValueError(f"px and py must be 3-D, got shapes {tuple(px.shape)} and {tuple(py.shape)}")
    B, S, T1 = px.shape
    T = py.shape[2]
    if tuple(py.shape) != (B, S + 1, T) or T1 not in (T, T + 1):
        raise ValueError(
            f"px must be (B, S, T+1) or (B, S, T) and py (B, S+1, T); got px {tuple(px.shape)}, "
            f"py {tuple(py.shape)}"
        )
    if px.dtype != py.dtype:
        raise ValueError(f"px and py must share a dtype, got {px.dtype} and {py.dtype}")
    if boundary is not None:
        _check_boundary(boundary, B, S, T)
    grads: List[Optional[Tensor]] = [None, None]
    scores = _LatticeScores.apply(px, py, boundary, grads if return_grad else None)
    if return_grad:
        return scores, (grads[0], grads[1])
    return scores


def _check_boundary(boundary: Tensor, B: int, S: int, T: int) -> None:
    if boundary.shape != (B, 4) or boundary.dtype != torch.int64:
        raise ValueError(
            f"boundary must be an int64 tensor of shape ({B}, 4), got {boundary.dtype} "
            f"{tuple(boundary.shape)}"
        )
    s0, t0, s1, t1 = boundary.unbind(1)
    bad = (s0 < 0) | (s0 > s1) | (s1 > S) | (t0 < 0) | (t0 > t1) | (t1 > T)
    if bool(bad.any()):
        b = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"boundary row {b} = {boundary[b].tolist()} must satisfy 0 <= s_begin <= s_end <= S={S} "
            f"and 0 <= t_begin <= t_end <= T={T}"
        )


class _Skew:
    """Index bookkeeping between the (s, t) layout of px/py and the skewed wavefront buffers.

    Arcs live in one (K, 2, B, S+1) buffer: ``[k, 0, :, s+1]`` holds symbol arc s (column 0 is
    -inf) and ``[k, 1, :, s]`` blank arc s; alpha and beta live in (K, B, S+2) buffers, alpha at
    column s+1 and beta at column s, so that each step reads shifted slices only.
    """

    def __init__(self, B: int, S: int, T: int, regular: bool) -> None:
        self.B, self.S, self.T, self.regular = B, S, T, regular
        self.T1 = T + 1 if regular else T
        self.K = S + T + 1 if regular else T + 1

    def k_of(self, s: Tensor, t: Tensor) -> Tensor:
        return s + t if self.regular else t

    def x_view(self, buf: Tensor) -> Tensor:
        """The (B, S, T1) view of a (K, B, >= S+1) wavefront buffer that lines up with px
        (symbol arc s of wavefront k sits in column s + 1)."""
        return self._view(buf, self.S, 1)

    def y_view(self, buf: Tensor) -> Tensor:
        """The (B, S+1, T) view of a (K, B, >= S+1) wavefront buffer that lines up with py
        (blank arc s of wavefront k sits in column s)."""
        return self._view(buf, self.S + 1, 0)

    def _view(self, buf: Tensor, rows: int, first_col: int) -> Tensor:
        sk, sb, sc = buf.stride()
        T = self.T1 if first_col else self.T
        s_stride = sc + (sk if self.regular else 0)  # regular: one symbol further is one wavefront on
        return buf.as_strided((self.B, rows, T), (sb, s_stride, sk), buf.storage_offset() + first_col * sc)


def _inject(buf: Tensor, ks: Tensor, bs: Tensor, cols: Tensor) -> dict:
    """Group the (k, b, col) start (or end) points by wavefront k: {k: (b_idx, col_idx)}."""
    out: dict = {}
    for k, b, c in zip(ks.tolist(), bs.tolist(), cols.tolist()):
        out.setdefault(k, ([], []))
        out[k][0].append(b)
        out[k][1].append(c)
    return {k: (torch.tensor(v[0], device=buf.device), torch.tensor(v[1], device=buf.device))
            for k, v in out.items()}


class _LatticeScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx, px: Tensor, py: Tensor, boundary: Optional[Tensor], grads_out):
        B, S, T1 = px.shape
        T = py.shape[2]
        sk = _Skew(B, S, T, T1 == T + 1)
        K = sk.K
        dev, dt = px.device, torch.float64
        if boundary is None:
            boundary = torch.tensor([0, 0, S, T], device=dev, dtype=torch.int64).expand(B, 4)
        s0, t0, s1, t1 = boundary.to(dev).unbind(1)
        k0, k1 = sk.k_of(s0, t0), sk.k_of(s1, t1)
        bidx = torch.arange(B, device=dev)

        # arcs[k, 0, :, c] = symbol arc c - 1 (into index c, from c - 1; column 0 stays -inf),
        # arcs[k, 1, :, c] = blank arc c (from index c).
        arcs = torch.full((K, 2, B, S + 1), _NEG_INF, device=dev, dtype=dt)
        xbuf, ybuf = arcs[:, 0], arcs[:, 1]
        sk.x_view(xbuf).copy_(px)
        sk.y_view(ybuf).copy_(py)

        alpha = torch.full((K, B, S + 2), _NEG_INF, device=dev, dtype=dt)
        starts = _inject(alpha, k0, bidx, s0 + 1)
        _run(alpha, arcs, starts, forward=True)
        total = alpha[k1, bidx, s1 + 1]

        ctx.sk = sk
        ctx.out_dtype = px.dtype
        ctx.save_for_backward(xbuf, ybuf, alpha, total, k1, s1)
        ctx.occupancy = None
        if grads_out is not None:
            occ = _occupancy(sk, xbuf, ybuf, alpha, total, k1, s1, px.dtype)
            ctx.occupancy = occ
            grads_out[0], grads_out[1] = occ
        return total.to(px.dtype)

    @staticmethod
    def backward(ctx, grad_scores: Tensor):
        if ctx.occupancy is None:
            xbuf, ybuf, alpha, total, k1, s1 = ctx.saved_tensors
            ctx.occupancy = _occupancy(ctx.sk, xbuf, ybuf, alpha, total, k1, s1, ctx.out_dtype)
        px_occ, py_occ = ctx.occupancy
        g = grad_scores.to(px_occ.dtype).view(-1, 1, 1)
        return px_occ * g, py_occ * g, None, None


def _run(buf: Tensor, arcs: Tensor, inject: dict, forward: bool) -> None:
    """The wavefront loop, in place on ``buf`` (K, B, S+2).

    ``arcs`` is (K, 2, B, S+1), paired with the two overlapping slices of the previous
    wavefront (columns 0..S and 1..S+1):
    forward:  buf[k, :, 1:]  = logaddexp(buf[k-1, :, :-1] + arcs[k-1, 0], buf[k-1, :, 1:] + arcs[k-1, 1])
    backward: buf[k, :, :-1] = logaddexp(buf[k+1, :, :-1] + arcs[k, 0], buf[k+1, :, 1:] + arcs[k, 1])
    """
    K, B, S2 = buf.shape
    # (K, 2, B, S+1) overlapping view of buf: [k, 0] = columns 0..S, [k, 1] = columns 1..S+1
    pairs = buf.as_strided((K, 2, B, S2 - 1), (B * S2, 1, S2, 1)).unbind(0)
    if forward:
        outs = buf[:, :, 1:].unbind(0)
        steps = range(1, K)
        src = -1
    else:
        outs = buf[:, :, :-1].unbind(0)
        steps = range(K - 2, -1, -1)
        src = 1
    arcs_k = arcs.unbind(0)
    tmp = torch.empty((2, B, S2 - 1), device=buf.device, dtype=buf.dtype)
    t_sym, t_blank = tmp.unbind(0)
    add, lae = torch.add, torch.logaddexp
    first = 0 if forward else K - 1
    if first in inject:
        b, c = inject[first]
        buf[first, b, c] = 0.0
    for k in steps:
        add(pairs[k + src], arcs_k[k - 1 if forward else k], out=tmp)
        lae(t_sym, t_blank, out=outs[k])
        if k in inject:
            b, c = inject[k]
            buf[k, b, c] = 0.0


def _occupancy(sk: _Skew, xbuf, ybuf, alpha, total, k1, s1, out_dtype) -> Tuple[Tensor, Tensor]:
    """Arc occupation probabilities (px_grad, py_grad) from alpha, a fresh beta pass and total."""
    K, B, S2 = alpha.shape
    S = S2 - 2
    bidx = torch.arange(B, device=alpha.device)
    beta = torch.full_like(alpha, _NEG_INF)
    ends = _inject(beta, k1, bidx, s1)
    # beta pairs index s with (blank arc s, symbol arc s); the last symbol column is -inf
    barcs = torch.empty((K, 2, B, S + 1), device=alpha.device, dtype=alpha.dtype)
    barcs[:, 0] = ybuf
    barcs[:, 1, :, :S] = xbuf[:, :, 1:]
    barcs[:, 1, :, S] = _NEG_INF
    _run(beta, barcs, ends, forward=False)
    safe_total = torch.where(torch.isfinite(total), total, torch.zeros_like(total))
    norm = safe_total.view(1, B, 1)
    gx = torch.zeros((K, B, S + 1), device=alpha.device, dtype=alpha.dtype)
    gy = torch.zeros((K, B, S + 1), device=alpha.device, dtype=alpha.dtype)
    if K > 1 and S > 0:
        # symbol arc out of (k, s): alpha[k][s] + x[k][s] + beta[k+1][s+1]
        arc = alpha[:-1, :, 1 : S + 1] + xbuf[:-1, :, 1 : S + 1]
        torch.exp(arc.add_(beta[1:, :, 1 : S + 1]).sub_(norm), out=gx[:-1, :, 1 : S + 1])
    if K > 1:
        # blank arc out of (k, s): alpha[k][s] + y[k][s] + beta[k+1][s]
        arc = alpha[:-1, :, 1:] + ybuf[:-1]
        torch.exp(arc.add_(beta[1:, :, : S + 1]).sub_(norm), out=gy[:-1])
    return sk.x_view(gx.clamp_(max=1.0)).to(out_dtype, copy=True), sk.y_view(gy.clamp_(max=1.0)).to(out_dtype, copy=True)
