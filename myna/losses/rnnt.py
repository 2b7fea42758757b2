"""RNN-T losses, full and pruned, in pure PyTorch, with k2 / fast_rnnt's API.

Every public loss is "get log-probs" followed by one shared lattice recursion
(:func:`myna.losses._lattice.lattice_scores`): the log-probs are ``px`` (B, S, T+1) for symbol
arcs and ``py`` (B, S+1, T) for blank arcs (``px`` is (B, S, T) for the "modified" and
"constrained" topologies), and the recursion sums over all alignments. Function names, argument
names, order, defaults and conventions follow k2's ``rnnt_loss.py``, so icefall code switches
by changing the import:

>>> from myna.losses import rnnt_loss_smoothed, get_rnnt_prune_ranges, do_rnnt_pruning, rnnt_loss_pruned

Conventions shared by all functions:

- ``boundary`` is an optional (B, 4) int64 tensor of rows ``[begin_symbol, begin_frame,
  end_symbol, end_frame]``, treated as ``[0, 0, S, T]`` when omitted.
- ``rnnt_type``: ``"regular"`` (a symbol keeps the frame; blank moves to the next frame),
  ``"modified"`` (every emission, symbol or blank, moves to the next frame: at most one symbol
  per frame) or ``"constrained"`` (like modified, but emitting symbol c on frame t also pays the
  blank log-prob of the *next* context on frame t).
- ``reduction``: ``"none"`` (per-utterance losses, (B,)), ``"sum"``, or ``"mean"`` (sum / B).
- Losses are negated total log-probabilities in float32 (float64 for float64 inputs);
  float16 / bfloat16 inputs are computed in float32 and receive gradients in their own dtype.
- An utterance without any valid alignment (e.g. more symbols than frames for "modified")
  gets loss ``+inf`` and zero gradient, as in k2; filter it with ``torch.isfinite``.
- NaN or infinite values in ``logits`` / ``am`` / ``lm`` raise ``ValueError``.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import torch
from torch import Tensor

from ._joint import NonFiniteError, joint_log_probs
from ._lattice import lattice_scores

__all__ = [
    "NonFiniteError",
    "rnnt_loss",
    "rnnt_loss_simple",
    "rnnt_loss_smoothed",
    "get_rnnt_prune_ranges",
    "do_rnnt_pruning",
    "rnnt_loss_pruned",
    "transducer_loss",
    "pruned_transducer_loss",
]

_RNNT_TYPES = ("regular", "modified", "constrained")
_REDUCTIONS = ("none", "mean", "sum")


# --------------------------------------------------------------------------- full loss


def rnnt_loss(
    logits: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: Optional[str] = "mean",
    return_grad: bool = False,
    *,
    inplace_grad: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
    """The RNN-T loss from the full joiner output.

    Args:
      logits: (B, T, S+1, C) float, i.e. batch, frames, symbol_seq_len+1, num_classes: raw
        (unnormalised) joiner output; log-softmax over C is applied inside.
      symbols: (B, S) int64 in [0, C), the target symbols (padding beyond ``boundary``'s
        end_symbol is ignored but must still be a valid class id).
      termination_symbol: the blank / next-frame class, 0 <= termination_symbol < C.
      boundary: optional (B, 4) int64 ``[begin_symbol, begin_frame, end_symbol, end_frame]``.
      rnnt_type: "regular" | "modified" | "constrained".
      delay_penalty: constant rewarding early symbol emission (k2 issue 955); 0 disables it.
      reduction: "none" | "mean" | "sum".
      return_grad: also return the arc occupancies ``(px_grad, py_grad)``, see
        :func:`rnnt_loss_simple`.

    Returns:
      Loss: (B,) for reduction "none", else a scalar; ``(loss, (px_grad, py_grad))`` with
      ``return_grad``.

      inplace_grad: (myna only, keyword) the backward pass overwrites ``logits`` with its own
        gradient instead of allocating a second (B, T, S+1, C) buffer, as optimized_transducer
        does. Use it only when nothing reads ``logits`` after backward (float32/float64
        contiguous logits; ignored otherwise).

    Memory: besides ``logits`` and its gradient, only (B, T, S+1)-sized tensors are created;
    with ``inplace_grad`` the gradient shares ``logits``' memory.
    """
    _check_common(rnnt_type, reduction, termination_symbol, logits.shape[-1])
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, T, S+1, C), got shape {tuple(logits.shape)}")
    B, T, S1, C = logits.shape
    S = S1 - 1
    _check_symbols(symbols, B, S, C)
    # cell (t, s) needs the class of symbol s; the last row (s = S) only needs the blank.
    index = torch.cat((symbols, symbols.new_full((B, 1), termination_symbol)), dim=1)
    lp_blank, lp_sym = joint_log_probs(logits, index.unsqueeze(1), termination_symbol, inplace_grad)
    py = lp_blank.transpose(1, 2)  # (B, S+1, T)
    px = lp_sym[:, :, :S].transpose(1, 2)  # (B, S, T)
    px, py = _finish_px_py(px, py, boundary, rnnt_type)
    return _score(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


# --------------------------------------------------------------------------- simple losses


def rnnt_loss_simple(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: Optional[str] = "mean",
    return_grad: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
    """The RNN-T loss of the trivial joiner ``logits[b, t, s] = am[b, t] + lm[b, s]``.

    The (B, T, S+1, C) sum is never formed: normalisers come from one batched matmul of
    ``exp(lm)`` and ``exp(am)``.

    Args:
      lm: (B, S+1, C) float, i.e. batch, symbol_seq_len+1, num_classes: prediction-network part.
      am: (B, T, C) float, i.e. batch, frames, num_classes: encoder part.
      symbols: (B, S) int64 in [0, C).
      termination_symbol: blank class id.
      boundary, rnnt_type, delay_penalty, reduction: see :func:`rnnt_loss`.
      return_grad: also return ``(px_grad, py_grad)``, the occupation probabilities of the
        symbol and blank arcs, shaped like px (B, S, T+1) (regular) or (B, S, T), and py
        (B, S+1, T); they are the gradient of the summed per-utterance log-likelihood (i.e. of
        ``-loss`` with reduction "none") and feed :func:`get_rnnt_prune_ranges`.

    Returns:
      loss, or ``(loss, (px_grad, py_grad))`` if ``return_grad``.
    """
    return rnnt_loss_smoothed(
        lm, am, symbols, termination_symbol, 0.0, 0.0, boundary, rnnt_type, delay_penalty,
        reduction, return_grad,
    )


def rnnt_loss_smoothed(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    lm_only_scale: float = 0.1,
    am_only_scale: float = 0.1,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: Optional[str] = "mean",
    return_grad: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
    """:func:`rnnt_loss_simple` with the arc log-probs interpolated towards LM-only and AM-only ones.

    Each arc log-prob becomes ``(1 - lm_only_scale - am_only_scale) * joint
    + lm_only_scale * lm_only + am_only_scale * am_only``, where ``lm_only`` normalises ``lm``
    alone over C and ``am_only`` combines ``am`` with a unigram LM (the softmax of ``lm``
    averaged over batch and positions), as in k2. It regularises the simple loss of a pruned
    Transducer: the LM-only term trains the prediction network as a language model.

    Args:
      lm: (B, S+1, C) float; am: (B, T, C) float; symbols: (B, S) int64.
      lm_only_scale, am_only_scale: interpolation weights, each in [0, 1], sum <= 1.
      Others: see :func:`rnnt_loss_simple`.

    Returns:
      loss, or ``(loss, (px_grad, py_grad))`` if ``return_grad``.
    """
    _check_common(rnnt_type, reduction, termination_symbol, am.shape[-1])
    if lm.ndim != 3 or am.ndim != 3 or lm.shape[0] != am.shape[0] or lm.shape[2] != am.shape[2]:
        raise ValueError(
            f"lm must be (B, S+1, C) and am (B, T, C); got lm {tuple(lm.shape)}, am {tuple(am.shape)}"
        )
    _check_finite(lm, "lm")
    _check_finite(am, "am")
    B, T, C = am.shape
    S = lm.shape[1] - 1
    _check_symbols(symbols, B, S, C)
    px, py = _simple_log_probs(lm, am, symbols, termination_symbol, lm_only_scale, am_only_scale)
    px, py = _finish_px_py(px, py, boundary, rnnt_type)
    return _score(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


def _simple_log_probs(
    lm: Tensor, am: Tensor, symbols: Tensor, blank: int, lm_only_scale: float, am_only_scale: float
) -> Tuple[Tensor, Tensor]:
    """px (B, S, T) and py (B, S+1, T) of the additive joiner, optionally smoothed."""
    wdt = torch.float64 if am.dtype == torch.float64 else torch.float32
    lm, am = lm.to(wdt), am.to(wdt)
    B, T, C = am.shape
    S = lm.shape[1] - 1
    tiny = torch.finfo(wdt).tiny
    am_max = am.amax(dim=2, keepdim=True)  # (B, T, 1)
    lm_max = lm.amax(dim=2, keepdim=True)  # (B, S+1, 1)
    am_e = (am - am_max).exp()
    lm_e = (lm - lm_max).exp()
    # log sum_c exp(lm[b, s, c] + am[b, t, c]): (B, S+1, T)
    norm = (torch.matmul(lm_e, am_e.transpose(1, 2)) + tiny).log() + lm_max + am_max.transpose(1, 2)
    am_sym = torch.gather(am, 2, symbols.unsqueeze(1).expand(B, T, S)).transpose(1, 2)  # (B, S, T)
    lm_sym = torch.gather(lm[:, :S], 2, symbols.unsqueeze(2))  # (B, S, 1)
    am_blank = am[:, :, blank].unsqueeze(1)  # (B, 1, T)
    lm_blank = lm[:, :, blank].unsqueeze(2)  # (B, S+1, 1)
    px = am_sym + lm_sym - norm[:, :S]
    py = am_blank + lm_blank - norm
    if lm_only_scale == 0.0 and am_only_scale == 0.0:
        return px, py
    lm_sum = lm_e.sum(dim=2, keepdim=True)  # (B, S+1, 1)
    unigram = (lm_e / lm_sum).mean(dim=(0, 1)) + tiny  # (C,)
    am_only_norm = (torch.matmul(am_e, unigram).log().unsqueeze(2) + am_max).transpose(1, 2)  # (B, 1, T)
    log_unigram = unigram.log()
    lm_only_norm = lm_sum.log() + lm_max  # (B, S+1, 1)
    px_lm = lm_sym - lm_only_norm[:, :S]  # (B, S, 1)
    py_lm = lm_blank - lm_only_norm  # (B, S+1, 1)
    px_am = am_sym + log_unigram[symbols].unsqueeze(2) - am_only_norm  # (B, S, T)
    py_am = am_blank + log_unigram[blank] - am_only_norm  # (B, 1, T)
    w = 1.0 - lm_only_scale - am_only_scale
    px = px * w + px_lm * lm_only_scale + px_am * am_only_scale
    py = py * w + py_lm * lm_only_scale + py_am * am_only_scale
    return px, py


# --------------------------------------------------------------------------- pruning


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

    Args:
      px_grad: (B, S, T+1) (regular) or (B, S, T) occupation of symbol arcs (``return_grad``
        of :func:`rnnt_loss_simple`).
      py_grad: (B, S+1, T) occupation of blank arcs.
      boundary: (B, 4) int64 ``[begin_symbol, begin_frame, end_symbol, end_frame]``.
      s_range: window width; values above S are reduced to S+1 (no pruning). At least 2 is
        needed for regular RNN-T (1 for modified) for an alignment to survive.

    Returns:
      ranges: (B, T, s_range') int64 with ``0 <= ranges <= S``, ``ranges[b, t, k] = ranges[b, t, 0] + k``.
    """
    if px_grad.ndim != 3 or py_grad.ndim != 3:
        raise ValueError(f"px_grad/py_grad must be 3-D, got {tuple(px_grad.shape)}, {tuple(py_grad.shape)}")
    B, S, T1 = px_grad.shape
    T = py_grad.shape[2]
    if tuple(py_grad.shape) != (B, S + 1, T) or T1 not in (T, T + 1):
        raise ValueError(f"inconsistent px_grad {tuple(px_grad.shape)} and py_grad {tuple(py_grad.shape)}")
    if boundary is None or tuple(boundary.shape) != (B, 4):
        raise ValueError(f"boundary must be (B={B}, 4), got {None if boundary is None else tuple(boundary.shape)}")
    regular = T1 == T + 1
    if s_range < (2 if regular else 1):
        raise ValueError(
            f"s_range must be >= {2 if regular else 1} for {'regular' if regular else 'modified'} "
            f"RNN-T (narrower bands keep no complete alignment), got {s_range}"
        )
    s_range = min(s_range, S + 1)
    n_start = S + 2 - s_range  # candidate window starts 0 .. S + 1 - s_range
    with torch.no_grad():
        cum = torch.zeros((B, S + 2, T), dtype=py_grad.dtype, device=py_grad.device)
        torch.cumsum(py_grad, dim=1, out=cum[:, 1:])
        mass = cum[:, s_range:] - cum[:, :n_start]  # (B, n_start, T)
        if n_start > 1:
            mass[:, 1:] -= px_grad[:, : n_start - 1, :T]
        s_begin = mass.argmax(dim=1)  # (B, T)
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


def do_rnnt_pruning(am: Tensor, lm: Tensor, ranges: Tensor) -> Tuple[Tensor, Tensor]:
    """Gather the joiner inputs on the pruned band.

    Args:
      am: (B, T, J) float, encoder-side joiner input.
      lm: (B, S+1, J) float, prediction-side joiner input.
      ranges: (B, T, s_range) int64 from :func:`get_rnnt_prune_ranges`.

    Returns:
      (am_pruned, lm_pruned), each (B, T, s_range, J); ``am_pruned`` is an expanded view of
      ``am``, ``lm_pruned[b, t, k] = lm[b, ranges[b, t, k]]``.
    """
    if am.ndim != 3 or lm.ndim != 3 or ranges.ndim != 3:
        raise ValueError(f"expected am (B,T,J), lm (B,S+1,J), ranges (B,T,R); got {tuple(am.shape)}, "
                         f"{tuple(lm.shape)}, {tuple(ranges.shape)}")
    B, T, R = ranges.shape
    S1, J = lm.shape[1], lm.shape[2]
    if am.shape[0] != B or am.shape[1] != T or lm.shape[0] != B or am.shape[2] != J:
        raise ValueError(f"shape mismatch: am {tuple(am.shape)}, lm {tuple(lm.shape)}, ranges {tuple(ranges.shape)}")
    am_pruned = am.unsqueeze(2).expand(B, T, R, J)
    offset = (torch.arange(B, device=ranges.device) * S1).view(B, 1, 1)
    lm_pruned = lm.reshape(B * S1, J).index_select(0, (ranges + offset).reshape(-1))
    return am_pruned, lm_pruned.view(B, T, R, J)


def rnnt_loss_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: Optional[str] = "mean",
    return_grad: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
    """The RNN-T loss over the pruned band only.

    Args:
      logits: (B, T, s_range, C) float, i.e. batch, frames, prune_range, num_classes: raw joiner
        output on the band, ``logits[b, t, k]`` belonging to symbol position ``ranges[b, t, k]``.
      symbols: (B, S) int64 in [0, C).
      ranges: (B, T, s_range) int64 from :func:`get_rnnt_prune_ranges`.
      termination_symbol, boundary, rnnt_type, delay_penalty, reduction, return_grad: see
        :func:`rnnt_loss`.

    Returns:
      Loss: (B,) for reduction "none", else a scalar (with ``return_grad``, also the arc
      occupancies on the full (S+1, T+1) lattice). Arcs outside the band have log-prob -inf;
      with ``s_range >= S + 1`` this equals :func:`rnnt_loss`.
    """
    _check_common(rnnt_type, reduction, termination_symbol, logits.shape[-1])
    if logits.ndim != 4 or ranges.shape != logits.shape[:3]:
        raise ValueError(
            f"logits must be (B, T, s_range, C) and ranges (B, T, s_range); got logits "
            f"{tuple(logits.shape)}, ranges {tuple(ranges.shape)}"
        )
    B, T, R, C = logits.shape
    S = symbols.shape[1] if symbols.ndim == 2 else -1
    _check_symbols(symbols, B, S, C)
    if R > S + 1 or bool((ranges < 0).any()) or bool((ranges > S).any()):
        raise ValueError(f"ranges must lie in [0, S={S}] with s_range <= S+1, got s_range={R}, "
                         f"min {int(ranges.min())}, max {int(ranges.max())}")
    padded = torch.cat((symbols, symbols.new_full((B, 1), termination_symbol)), dim=1)  # (B, S+1)
    index = torch.gather(padded.unsqueeze(1).expand(B, T, S + 1), 2, ranges)  # (B, T, R)
    lp_blank, lp_sym = joint_log_probs(logits, index, termination_symbol)
    neg = lp_blank.new_full((B, T, S + 1), float("-inf"))
    px = torch.scatter(neg, 2, ranges, lp_sym)[:, :, :S].transpose(1, 2)  # (B, S, T)
    py = torch.scatter(neg, 2, ranges, lp_blank).transpose(1, 2)  # (B, S+1, T)
    px, py = _finish_px_py(px, py, boundary, rnnt_type)
    return _score(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


# --------------------------------------------------------------------------- myna conveniences


def transducer_loss(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    blank: int,
    reduction: str = "mean",
    rnnt_type: str = "regular",
    *,
    inplace_grad: bool = False,
) -> Tensor:
    """Full RNN-T loss with lengths instead of a boundary (the Transducer model's entry point).

    Args:
      logits: (B, T, U+1, C) float, raw joiner output (log-probs are fine too: log-softmax
        is idempotent).
      targets: (B, U) int64; entries at or past ``target_lengths`` are ignored (any value).
      logit_lengths: (B,) int64 valid frames per utterance, <= T.
      target_lengths: (B,) int64 valid targets per utterance, <= U.
      blank: blank class id (NeMo: the last class, C - 1).
      reduction: "mean" (mean over utterances: NeMo's ``mean_batch``, k2's ``mean``),
        "sum" or "none".
      rnnt_type: "regular" | "modified" | "constrained".
      inplace_grad: backward overwrites ``logits`` with its gradient (saves one logits-sized
        buffer); only when nothing reads ``logits`` after backward. See :func:`rnnt_loss`.

    Returns:
      Loss: (B,) for reduction "none", else a scalar.
    """
    boundary, symbols = _boundary_and_symbols(targets, logit_lengths, target_lengths, blank, logits.shape[1])
    return rnnt_loss(logits, symbols, blank, boundary, rnnt_type, 0.0, reduction, inplace_grad=inplace_grad)


def pruned_transducer_loss(
    am: Tensor,
    lm: Tensor,
    joiner_fn: Callable[[Tensor, Tensor], Tensor],
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    blank: int,
    s_range: int = 5,
    lm_only_scale: float = 0.25,
    am_only_scale: float = 0.0,
    reduction: str = "mean",
    *,
    joiner_am: Optional[Tensor] = None,
    joiner_lm: Optional[Tensor] = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
) -> Tuple[Tensor, Tensor]:
    """The pruned RNN-T recipe in one call: simple (smoothed) loss, ranges, band joiner, pruned loss.

    Steps, as icefall does them: (1) :func:`rnnt_loss_smoothed` on ``am`` + ``lm`` with
    ``return_grad``; (2) :func:`get_rnnt_prune_ranges` with ``s_range``; (3)
    :func:`do_rnnt_pruning` of the joiner inputs; (4) ``logits = joiner_fn(am_pruned,
    lm_pruned)``; (5) :func:`rnnt_loss_pruned`. The model combines the two results, e.g.
    ``simple_loss_scale * simple + pruned``.

    Args:
      am: (B, T, C) float, encoder output projected to the vocabulary (icefall's
        ``simple_am_proj``), for the simple loss.
      lm: (B, U+1, C) float, prediction output projected to the vocabulary
        (``simple_lm_proj``), for the simple loss.
      joiner_fn: callable ``(am_pruned (B, T, s_range, J), lm_pruned (B, T, s_range, J)) ->
        logits (B, T, s_range, C)``: the real joiner, run on the band only (raw logits).
      targets: (B, U) int64; entries past ``target_lengths`` are ignored.
      logit_lengths: (B,) int64 valid frames; target_lengths: (B,) int64 valid targets.
      blank: blank class id.
      s_range: band width (symbols kept per frame); larger: closer to the full loss, more memory.
      lm_only_scale, am_only_scale: smoothing of the simple loss (see
        :func:`rnnt_loss_smoothed`); both 0 gives :func:`rnnt_loss_simple`.
      reduction: "mean" | "sum" | "none", applied to both losses.
      joiner_am: (B, T, J) joiner-side encoder input to prune (e.g. the joiner's encoder
        projection); default ``am``.
      joiner_lm: (B, U+1, J) joiner-side prediction input to prune; default ``lm``.
      rnnt_type, delay_penalty: see :func:`rnnt_loss`.

    Returns:
      (simple_loss, pruned_loss), each (B,) for reduction "none", else scalars.
    """
    T = am.shape[1]
    boundary, symbols = _boundary_and_symbols(targets, logit_lengths, target_lengths, blank, T)
    simple, (px_grad, py_grad) = rnnt_loss_smoothed(
        lm, am, symbols, blank, lm_only_scale, am_only_scale, boundary, rnnt_type,
        delay_penalty, reduction, return_grad=True,
    )
    ranges = get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
    am_pruned, lm_pruned = do_rnnt_pruning(
        am if joiner_am is None else joiner_am, lm if joiner_lm is None else joiner_lm, ranges
    )
    logits = joiner_fn(am_pruned, lm_pruned)
    pruned = rnnt_loss_pruned(logits, symbols, ranges, blank, boundary, rnnt_type, delay_penalty, reduction)
    return simple, pruned


# --------------------------------------------------------------------------- shared pieces


def _boundary_and_symbols(
    targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor, blank: int, T: int
) -> Tuple[Tensor, Tensor]:
    """k2 boundary (B, 4) = [0, 0, target_len, logit_len] and targets with padding set to blank."""
    if targets.ndim != 2:
        raise ValueError(f"targets must be (B, U), got shape {tuple(targets.shape)}")
    B, U = targets.shape
    logit_lengths = logit_lengths.to(device=targets.device, dtype=torch.int64).reshape(-1)
    target_lengths = target_lengths.to(device=targets.device, dtype=torch.int64).reshape(-1)
    if logit_lengths.shape != (B,) or target_lengths.shape != (B,):
        raise ValueError(f"lengths must be ({B},), got {tuple(logit_lengths.shape)} and {tuple(target_lengths.shape)}")
    if bool(((logit_lengths < 0) | (logit_lengths > T)).any()):
        raise ValueError(f"logit_lengths must lie in [0, T={T}], got {logit_lengths.tolist()}")
    if bool(((target_lengths < 0) | (target_lengths > U)).any()):
        raise ValueError(f"target_lengths must lie in [0, U={U}], got {target_lengths.tolist()}")
    pad = torch.arange(U, device=targets.device).unsqueeze(0) >= target_lengths.unsqueeze(1)
    symbols = targets.to(torch.int64).masked_fill(pad, blank)
    zeros = torch.zeros_like(logit_lengths)
    boundary = torch.stack((zeros, zeros, target_lengths, logit_lengths), dim=1)
    return boundary, symbols


def _finish_px_py(px: Tensor, py: Tensor, boundary: Optional[Tensor], rnnt_type: str) -> Tuple[Tensor, Tensor]:
    """From px (B, S, T) to the topology's px: -inf column for regular, + next blank for constrained."""
    B, S, T = px.shape
    if rnnt_type == "regular":
        px = torch.cat((px, px.new_full((B, S, 1), float("-inf"))), dim=2)  # (B, S, T+1)
        if boundary is not None:
            # no symbol may be emitted on the one-past-the-last frame of each utterance
            col = boundary[:, 3].to(px.device).view(B, 1, 1).expand(B, S, 1)
            px = px.scatter(2, col, float("-inf"))
    elif rnnt_type == "constrained":
        px = px + py[:, 1:, :]
    return px, py


def _score(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad):
    if delay_penalty > 0.0:
        B, S, T1 = px.shape
        T = T1 - 1 if rnnt_type == "regular" else T1
        if boundary is None:
            offset = torch.full((B,), (T - 1) / 2, dtype=px.dtype, device=px.device)
        else:
            offset = (boundary[:, 3].to(px.device, px.dtype) - 1) / 2
        t = torch.arange(T1, dtype=px.dtype, device=px.device)
        px = px + (offset.view(B, 1, 1) - t.view(1, 1, T1)) * delay_penalty
    out = lattice_scores(px, py, boundary, return_grad)
    scores, grads = out if return_grad else (out, None)
    if reduction == "none":
        loss = -scores
    elif reduction == "mean":
        loss = -scores.mean()
    else:
        loss = -scores.sum()
    return (loss, grads) if return_grad else loss


def _check_common(rnnt_type: str, reduction, blank: int, C: int) -> None:
    if rnnt_type not in _RNNT_TYPES:
        raise ValueError(f"rnnt_type must be one of {_RNNT_TYPES}, got {rnnt_type!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not 0 <= int(blank) < C:
        raise ValueError(f"termination_symbol must lie in [0, C={C}), got {blank}")


def _check_symbols(symbols: Tensor, B: int, S: int, C: int) -> None:
    if symbols.dtype != torch.int64 or tuple(symbols.shape) != (B, S):
        raise ValueError(f"symbols must be int64 of shape ({B}, {S}), got {symbols.dtype} {tuple(symbols.shape)}")
    if symbols.numel() and (int(symbols.min()) < 0 or int(symbols.max()) >= C):
        raise ValueError(f"symbols must lie in [0, C={C}), got min {int(symbols.min())}, max {int(symbols.max())}")


def _check_finite(x: Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        where = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise NonFiniteError(f"{name} must be finite; found {x[tuple(where)].item()} at index {where}")
