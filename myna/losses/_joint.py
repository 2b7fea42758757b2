"""Blank and symbol log-probabilities from joiner logits, in chunks, with an in-place gradient.

:func:`joint_log_probs` is the only place that touches the big (B, T, U, C) joiner output. The
forward pass takes one log-sum-exp per row in cache-sized chunks and gathers two columns per
row; the backward pass writes ``softmax * w`` straight into the gradient buffer chunk by chunk
and adds the two one-hot terms. No second full-size tensor besides the gradient is created.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor


class NonFiniteError(ValueError):
    """A loss input (logits, am, lm) holds NaN or inf: the batch cannot give a loss."""

# Rows of C classes per chunk: about 1 MB of float32 for C = 500, small enough to stay in L2.
_CHUNK_ELEMS = 1 << 18


def joint_log_probs(
    logits: Tensor, index: Tensor, blank: int, inplace_grad: bool = False
) -> Tuple[Tensor, Tensor]:
    """Normalised log-probs of the blank and of one chosen class per lattice cell.

    Args:
      logits: (B, T, U, C) float (float16/bfloat16 are computed in float32), raw joiner output.
      index: (B, T, U) or broadcastable to it, int64 in [0, C): the class whose log-prob is
        returned in ``lp_sym`` for each cell.
      blank: the blank / termination class, 0 <= blank < C.
      inplace_grad: write the gradient into ``logits``' own memory during backward (only for
        contiguous float32/float64 ``logits``; otherwise ignored). Saves one (B, T, U, C)
        buffer, but ``logits`` holds its gradient afterwards.

    Returns:
      (lp_blank, lp_sym), each (B, T, U), float32 (float64 for float64 logits):
      ``logits[..., blank] - logsumexp(logits)`` and ``logits[..., index] - logsumexp(logits)``.

    Raises:
      ValueError: if ``logits`` holds a NaN or an infinity.
    """
    return _JointLogProbs.apply(logits, index, blank, inplace_grad)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class _JointLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, index: Tensor, blank: int, inplace_grad: bool):
        B, T, U, C = logits.shape
        wdt = _work_dtype(logits.dtype)
        x = logits.contiguous().view(-1, C)
        N = x.shape[0]
        idx = index.expand(B, T, U).reshape(N, 1)
        lse = torch.empty(N, dtype=wdt, device=x.device)
        rows = max(1, _CHUNK_ELEMS // max(C, 1))
        # Everything the loop writes is preallocated: per-chunk allocations that outlive the
        # chunk (even 0-d ones) fragment the heap around the freed chunk temporaries.
        n_chunks = (N + rows - 1) // rows
        lows = torch.empty(n_chunks, dtype=wdt, device=x.device)
        row_max = torch.empty(rows, 1, dtype=wdt, device=x.device)
        tmp = torch.empty(rows, C, dtype=wdt, device=x.device)
        for i, r0 in enumerate(range(0, N, rows)):
            r1 = min(r0 + rows, N)
            xc, mx, tc, out = x[r0:r1], row_max[: r1 - r0], tmp[: r1 - r0], lse[r0:r1]
            if xc.dtype != wdt:
                tc.copy_(xc)
                xc = tc
            torch.amin(xc, dim=(0, 1), out=lows[i])
            torch.amax(xc, dim=1, keepdim=True, out=mx)
            torch.sub(xc, mx, out=tc)
            torch.sum(tc.exp_(), dim=1, out=out)
            out.log_().add_(mx.view(-1))
        if N and not (bool(torch.isfinite(lows).all()) and bool(torch.isfinite(lse).all())):
            bad = (~torch.isfinite(x)).nonzero()[0].tolist()
            row = bad[0]
            b, rem = divmod(row, T * U)
            t, u = divmod(rem, U)
            raise NonFiniteError(
                f"logits must be finite; found {x[row, bad[1]].item()} at [b={b}, t={t}, u={u}, "
                f"c={bad[1]}]"
            )
        lp_blank = x[:, blank].to(wdt) - lse
        lp_sym = torch.gather(x, 1, idx).view(N).to(wdt) - lse
        ctx.save_for_backward(logits, idx, lse)
        ctx.blank = blank
        ctx.inplace = inplace_grad and logits.dtype == wdt and logits.is_contiguous()
        return lp_blank.view(B, T, U), lp_sym.view(B, T, U)

    @staticmethod
    def backward(ctx, g_blank: Tensor, g_sym: Tensor):
        logits, idx, lse = ctx.saved_tensors
        B, T, U, C = logits.shape
        x = logits.contiguous().view(-1, C)
        N = x.shape[0]
        wdt = lse.dtype
        gb = g_blank.reshape(N).to(wdt) if g_blank is not None else torch.zeros(N, dtype=wdt)
        gs = g_sym.reshape(N).to(wdt) if g_sym is not None else torch.zeros(N, dtype=wdt)
        w = -(gb + gs)
        # in place: each chunk of logits is read once, then overwritten by its gradient
        grad = x if ctx.inplace else torch.empty_like(x)
        rows = max(1, _CHUNK_ELEMS // max(C, 1))
        tmp = None if grad.dtype == wdt else torch.empty(rows, C, dtype=wdt, device=x.device)
        blank = ctx.blank
        for r0 in range(0, N, rows):
            r1 = min(r0 + rows, N)
            xc, lc = x[r0:r1], lse[r0:r1, None]
            if tmp is None:
                gc = grad[r0:r1]
                torch.sub(xc, lc, out=gc)
            else:
                gc = tmp[: r1 - r0]
                torch.sub(gc.copy_(xc), lc, out=gc)
            gc.exp_().mul_(w[r0:r1, None])
            gc[:, blank] += gb[r0:r1]
            gc.scatter_add_(1, idx[r0:r1], gs[r0:r1, None])
            if tmp is not None:
                grad[r0:r1].copy_(gc)
        return grad.view(B, T, U, C), None, None, None
