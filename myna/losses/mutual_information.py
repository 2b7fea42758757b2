"""The lattice recursion as k2 exposes it: ``mutual_information_recursion`` and its joint variant.

Both functions compute, for each sequence pair b, the log-sum over all monotonic paths through
the (S+1) x (T+1) lattice::

    p[b, s_begin, t_begin] = 0
    regular  (px is (B, S, T+1)):  p[s, t] = logaddexp(p[s-1, t] + px[s-1, t],   p[s, t-1] + py[s, t-1])
    modified (px is (B, S, T)):    p[s, t] = logaddexp(p[s-1, t-1] + px[s-1, t-1], p[s, t-1] + py[s, t-1])
    result[b] = p[b, s_end, t_end]

Names, arguments, defaults and return conventions are k2's (``k2/python/k2/mutual_information.py``)
so that code written for k2 or fast_rnnt runs unchanged; the recursion is
:func:`myna.losses._lattice.lattice_scores` (float64 accumulation, analytic gradients).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ._lattice import lattice_scores

__all__ = ["mutual_information_recursion", "joint_mutual_information_recursion"]


def mutual_information_recursion(
    px: Tensor,
    py: Tensor,
    boundary: Optional[Tensor] = None,
    return_grad: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
    """Total log-probability of the lattice defined by ``px`` and ``py``, differentiable.

    Args:
      px: (B, S, T+1) (regular) or (B, S, T) (modified) float: log-weight of the arc from
        (s, t) to (s+1, t) (regular) or (s+1, t+1) (modified); ``-inf`` removes the arc.
      py: (B, S+1, T), same dtype: log-weight of the arc from (s, t) to (s, t+1).
      boundary: optional (B, 4) int64 rows ``[s_begin, t_begin, s_end, t_end]`` with
        ``0 <= s_begin <= s_end <= S`` and ``0 <= t_begin <= t_end <= T``; default
        ``[0, 0, S, T]`` for every row.
      return_grad: also return ``(px_grad, py_grad)``, the gradient of ``scores.sum()``
        with respect to ``px`` and ``py`` (the arc occupation probabilities, in [0, 1]),
        shaped and typed like ``px`` and ``py``.

    Returns:
      scores (B,) in px's dtype (``-inf`` where no path exists; its gradient is 0), or
      ``(scores, (px_grad, py_grad))`` when ``return_grad``.

    Raises:
      ValueError: on inconsistent shapes, dtypes or boundary rows.
    """
    return lattice_scores(px, py, boundary, return_grad)


def joint_mutual_information_recursion(
    px: Sequence[Tensor],
    py: Sequence[Tensor],
    boundary: Optional[Tensor] = None,
) -> Tensor:
    """The recursion over ``sum(px)`` and ``sum(py)``, with the total split into per-term parts.

    The N terms share one lattice: the recursion runs once on ``px_tot = px[0] + ... + px[N-1]``
    and ``py_tot`` likewise. Term n's part is the occupancy-weighted sum of its own arc
    weights, ``sum(px_occ * px[n]) + sum(py_occ * py[n])`` (arcs with weight ``-inf``
    contribute 0). These parts add up to less than the total (sum of logs versus log of sum),
    so the difference is added to term 0: ``result.sum(0)`` equals
    ``mutual_information_recursion(px_tot, py_tot, boundary)``. Gradients flow to every
    ``px[n]`` and ``py[n]`` and equal the occupancies, exactly as for the summed recursion.

    Args:
      px: N >= 1 tensors, each (B, S, T+1) (regular) or (B, S, T) (modified), one dtype.
      py: N tensors, each (B, S+1, T).
      boundary: optional (B, 4) int64, see :func:`mutual_information_recursion`.

    Returns:
      (N, B) tensor in px's dtype; row 0 carries the log-of-sum correction.
    """
    n = len(px)
    if n == 0 or len(py) != n:
        raise ValueError(f"px and py must be non-empty sequences of one length, got {len(px)} and {len(py)}")
    px_all = torch.stack(tuple(px))  # (N, B, S, T1)
    py_all = torch.stack(tuple(py))  # (N, B, S+1, T)
    with torch.no_grad():
        total, (px_occ, py_occ) = lattice_scores(px_all.sum(0), py_all.sum(0), boundary, return_grad=True)
    B = px_all.shape[1]

    def weighted(occ: Tensor, arcs: Tensor) -> Tensor:
        # -inf arcs have occupancy 0; zero them so that 0 * -inf does not give NaN
        finite = torch.where(torch.isneginf(arcs), torch.zeros_like(arcs), arcs)
        return (finite.reshape(n, B, -1) * occ.reshape(1, B, -1)).sum(-1)

    parts = weighted(px_occ, px_all) + weighted(py_occ, py_all)  # (N, B)
    offset = (total - parts.detach().sum(0)).unsqueeze(0)
    correction = torch.cat((offset, offset.new_zeros(n - 1, B)), dim=0)
    return parts + correction
