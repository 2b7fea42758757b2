"""Pruning bounds for the pruned RNN-T loss: which symbol positions each frame keeps.

:func:`get_rnnt_prune_ranges` picks, per frame, a window of ``s_range`` consecutive symbol
positions from the arc occupancies of the simple loss (the method of the pruned RNN-T paper,
arXiv:2206.13236, section 3.2); :func:`get_rnnt_prune_ranges_deprecated` is k2's earlier, less
exact rule, kept for comparison; :func:`do_rnnt_pruning` gathers the joiner inputs on the band.
Names, arguments and conventions are k2's.
"""

from __future__ import annotations

import warnings
from typing import Tuple

import torch
from torch import Tensor

__all__ = ["get_rnnt_prune_ranges", "get_rnnt_prune_ranges_deprecated", "do_rnnt_pruning"]


def get_rnnt_prune_ranges(
    px_grad: Tensor, py_grad: Tensor, boundary: Tensor, s_range: int
) -> Tensor:
    """Per-frame symbol windows of width ``s_range`` that keep most of the alignment mass.

    For frame t the window starts at the ``s0`` maximising the occupation of the blank arcs
    ``py_grad[s0 : s0 + s_range, t]`` minus the symbol arc entering the window from below,
    ``px_grad[s0 - 1, t]``. The starts are then made monotone in t, start at 0 on frame 0,
    move by at most ``s_range - 1`` per frame (1 for modified/constrained, where a frame
    carries at most one symbol) and end at ``end_symbol - s_range + 1`` on the last frame, so
    at least one complete alignment survives pruning. Example with T=10, symbols
    ``[A B C D E F]`` and s_range=3::

        [[0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 2], [1, 2, 3],
         [1, 2, 3], [1, 2, 3], [3, 4, 5], [3, 4, 5], [3, 4, 5]]

    keeps A B C on frames 0-3, B C D on frames 4-6 and D E F on frames 7-9.

    Width adjustments, as in k2:

    - Regular RNN-T: a frame's window lets a path emit at most ``s_range - 1`` symbols there,
      so an utterance of S_b symbols in T_b frames needs ``s_range >= (S_b - 1) // T_b + 2``
      (``//`` rounding towards zero). A narrower ``s_range`` is widened to the batch's
      largest such minimum with a ``UserWarning``; otherwise such an utterance would get an
      infinite pruned loss.
    - ``s_range > S`` is reduced to ``S + 1`` (nothing is pruned), silently.

    Args:
      px_grad: (B, S, T+1) (regular) or (B, S, T) occupation of symbol arcs (``return_grad``
        of :func:`~myna.losses.rnnt_loss_simple`).
      py_grad: (B, S+1, T) occupation of blank arcs.
      boundary: (B, 4) int64 ``[begin_symbol, begin_frame, end_symbol, end_frame]``.
      s_range: requested window width (at least 1 for modified/constrained RNN-T).

    Returns:
      ranges: (B, T, s_range') int64 with the adjusted width s_range', ``0 <= ranges <= S``,
      ``ranges[b, t, k] = ranges[b, t, 0] + k``.

    Raises:
      ValueError: on inconsistent shapes, or ``s_range < 1`` for modified/constrained RNN-T.
    """
    B, S, T, regular = _check_grads(px_grad, py_grad, boundary)
    if regular:
        needed = _min_regular_s_range(boundary)
        if s_range < needed:
            widest = _widest_utterance(boundary)
            warnings.warn(
                f"get_rnnt_prune_ranges: s_range={s_range} cannot hold a path of utterance "
                f"{widest[0]} (S={widest[1]} symbols in T={widest[2]} frames needs "
                f"(S-1)//T + 2 = {needed}); using s_range={needed}",
                UserWarning,
                stacklevel=2,
            )
            s_range = needed
    _check_s_range(s_range, regular)
    s_range = min(s_range, S + 1)
    n_start = S + 2 - s_range  # candidate window starts 0 .. S + 1 - s_range
    with torch.no_grad():
        cum = torch.zeros((B, S + 2, T), dtype=py_grad.dtype, device=py_grad.device)
        torch.cumsum(py_grad, dim=1, out=cum[:, 1:])
        mass = cum[:, s_range:] - cum[:, :n_start]  # (B, n_start, T)
        if n_start > 1:
            mass[:, 1:] -= px_grad[:, : n_start - 1, :T]
        return _ranges_from_starts(mass.argmax(dim=1), boundary, s_range, regular)


def get_rnnt_prune_ranges_deprecated(
    px_grad: Tensor, py_grad: Tensor, boundary: Tensor, s_range: int
) -> Tensor:
    """k2's earlier pruning bounds: the window holding the most arc occupancy of any kind.

    For frame t the window start maximises the summed occupancy of *all* arcs (symbol and
    blank) leaving positions ``s0 .. s0 + s_range - 1``; the starts are then adjusted as in
    :func:`get_rnnt_prune_ranges`. Unlike that function, ``s_range`` is not widened for
    utterances with more symbols per frame than the window can hold (only reduced to S + 1
    when larger than S). Kept so that the two rules can be compared.

    Args and returns: see :func:`get_rnnt_prune_ranges`.

    Raises:
      ValueError: on inconsistent shapes, or ``s_range`` below 2 (regular) or 1 (modified).
    """
    B, S, T, regular = _check_grads(px_grad, py_grad, boundary)
    _check_s_range(s_range, regular)
    s_range = min(s_range, S + 1)
    T1 = px_grad.shape[2]
    with torch.no_grad():
        occ = py_grad.new_zeros((B, S + 2, T1))
        occ[:, 1 : S + 1] = px_grad
        occ[:, 1:, :T] += py_grad
        occ = occ.cumsum(dim=1)
        mass = occ[:, s_range:, :T] - occ[:, : S + 2 - s_range, :T]  # (B, S + 2 - s_range, T)
        return _ranges_from_starts(mass.argmax(dim=1), boundary, s_range, regular)


def do_rnnt_pruning(am: Tensor, lm: Tensor, ranges: Tensor) -> Tuple[Tensor, Tensor]:
    """Gather the joiner inputs on the pruned band.

    Args:
      am: (B, T, J_am) float, encoder-side joiner input.
      lm: (B, S+1, J_lm) float, prediction-side joiner input (J_lm may differ from J_am).
      ranges: (B, T, s_range) int64 from :func:`get_rnnt_prune_ranges`.

    Returns:
      (am_pruned (B, T, s_range, J_am), lm_pruned (B, T, s_range, J_lm)); ``am_pruned`` is an
      expanded view of ``am``, ``lm_pruned[b, t, k] = lm[b, ranges[b, t, k]]``.
    """
    if am.ndim != 3 or lm.ndim != 3 or ranges.ndim != 3:
        raise ValueError(f"expected am (B,T,J), lm (B,S+1,J), ranges (B,T,R); got {tuple(am.shape)}, "
                         f"{tuple(lm.shape)}, {tuple(ranges.shape)}")
    B, T, R = ranges.shape
    S1, J = lm.shape[1], lm.shape[2]
    if am.shape[0] != B or am.shape[1] != T or lm.shape[0] != B:
        raise ValueError(f"shape mismatch: am {tuple(am.shape)}, lm {tuple(lm.shape)}, ranges {tuple(ranges.shape)}")
    am_pruned = am.unsqueeze(2).expand(B, T, R, am.shape[2])
    offset = (torch.arange(B, device=ranges.device) * S1).view(B, 1, 1)
    lm_pruned = lm.reshape(B * S1, J).index_select(0, (ranges + offset).reshape(-1))
    return am_pruned, lm_pruned.view(B, T, R, J)


# --------------------------------------------------------------------------- shared pieces


def _check_grads(px_grad: Tensor, py_grad: Tensor, boundary: Tensor) -> Tuple[int, int, int, bool]:
    """(B, S, T, regular) after checking the shapes of the occupancies and the boundary."""
    if px_grad.ndim != 3 or py_grad.ndim != 3:
        raise ValueError(f"px_grad/py_grad must be 3-D, got {tuple(px_grad.shape)}, {tuple(py_grad.shape)}")
    B, S, T1 = px_grad.shape
    T = py_grad.shape[2]
    if tuple(py_grad.shape) != (B, S + 1, T) or T1 not in (T, T + 1):
        raise ValueError(f"inconsistent px_grad {tuple(px_grad.shape)} and py_grad {tuple(py_grad.shape)}")
    if boundary is None or tuple(boundary.shape) != (B, 4):
        raise ValueError(f"boundary must be (B={B}, 4), got {None if boundary is None else tuple(boundary.shape)}")
    return B, S, T, T1 == T + 1


def _check_s_range(s_range: int, regular: bool) -> None:
    if s_range < (2 if regular else 1):
        raise ValueError(
            f"s_range must be >= {2 if regular else 1} for {'regular' if regular else 'modified'} "
            f"RNN-T (narrower bands keep no complete alignment), got {s_range}"
        )


def _regular_needs(boundary: Tensor) -> Tensor:
    """(B,) smallest regular-RNN-T window per utterance, (S_b - 1) // T_b + 2 rounded to zero.

    Utterances without frames need nothing (0)."""
    s_len = boundary[:, 2] - boundary[:, 0]
    t_len = boundary[:, 3] - boundary[:, 1]
    need = torch.div(s_len - 1, t_len.clamp(min=1), rounding_mode="trunc") + 2
    return torch.where(t_len > 0, need, torch.zeros_like(need))


def _min_regular_s_range(boundary: Tensor) -> int:
    return int(_regular_needs(boundary).max()) if boundary.shape[0] else 0


def _widest_utterance(boundary: Tensor) -> Tuple[int, int, int]:
    """(index, S_b, T_b) of the utterance that needs the widest window."""
    b = int(_regular_needs(boundary).argmax())
    s0, t0, s1, t1 = boundary[b].tolist()
    return b, s1 - s0, t1 - t0


def _ranges_from_starts(s_begin: Tensor, boundary: Tensor, s_range: int, regular: bool) -> Tensor:
    """(B, T) raw window starts -> (B, T, s_range) ranges that keep a complete alignment.

    From each utterance's last frame on, the window is the last one (ending at end_symbol);
    then the starts are made monotone, 0 on frame 0 and rising by at most s_range - 1 per
    frame (1 for modified/constrained).
    """
    B, T = s_begin.shape
    t = torch.arange(T, device=s_begin.device)
    tail = t.unsqueeze(0) >= (boundary[:, 3:4] - 1)
    last = (boundary[:, 2:3] - s_range + 1).clamp(min=0).expand(B, T)
    s_begin = torch.where(tail, last, s_begin)
    s_begin = _limit_steps(s_begin, s_range - 1 if regular else 1)
    return s_begin.unsqueeze(2) + torch.arange(s_range, device=s_begin.device)


def _suffix_min(x: Tensor) -> Tensor:
    """x[..., i] -> min(x[..., i:]) along the last dim: the largest monotone lower bound."""
    return torch.flip(torch.cummin(torch.flip(x, (-1,)), dim=-1).values, (-1,))


def _limit_steps(s_begin: Tensor, step: int) -> Tensor:
    """Make (B, T) starts non-decreasing, 0 at t=0, and rising by at most ``step`` per frame.

    ``s_begin[t+1] - s_begin[t] <= step`` is the same as ``t * step - s_begin[t]`` being
    non-decreasing, so a suffix-min in that coordinate raises early starts just enough; clamping
    that coordinate at 0 gives ``s_begin[t] <= t * step`` and hence ``s_begin[0] = 0``.
    """
    ramp = torch.arange(s_begin.shape[1], device=s_begin.device) * step
    s_begin = _suffix_min(s_begin)
    v = _suffix_min(ramp - s_begin).clamp(min=0)
    return ramp - v
