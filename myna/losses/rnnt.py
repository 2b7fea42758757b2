"""RNN-T losses, full and pruned, in pure PyTorch, with k2's and fast_rnnt's API.

Every public loss is "get log-probs" followed by one shared lattice recursion
(:func:`myna.losses._lattice.lattice_scores`, which is also public as
:func:`~myna.losses.mutual_information_recursion`): the log-probs are ``px`` (B, S, T+1) for
symbol arcs and ``py`` (B, S+1, T) for blank arcs (``px`` is (B, S, T) for the "modified" and
"constrained" topologies), and the recursion sums over all alignments. The ``get_*_logprobs*``
functions return those ``(px, py)``. Function names, argument names, order, defaults and
conventions follow k2's ``rnnt_loss.py``, so icefall code switches by changing the import:

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
  The lattice recursion itself accumulates in float64.
- An utterance without any valid alignment (e.g. more symbols than frames for "modified")
  gets loss ``+inf`` and zero gradient, as in k2; filter it with ``torch.isfinite``.
- NaN or infinite values in ``logits`` / ``am`` / ``lm`` raise ``ValueError`` (k2 asserts
  instead; myna raises ``ValueError`` for every bad argument).
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import torch
from torch import Tensor

from ._joint import NonFiniteError, joint_log_probs
from ._lattice import lattice_scores
from .pruning import do_rnnt_pruning, get_rnnt_prune_ranges

__all__ = [
    "NonFiniteError",
    "fix_for_boundary",
    "get_rnnt_logprobs",
    "get_rnnt_logprobs_smoothed",
    "get_rnnt_logprobs_joint",
    "get_rnnt_logprobs_pruned",
    "get_hat_logprobs_pruned",
    "rnnt_loss",
    "rnnt_loss_simple",
    "rnnt_loss_smoothed",
    "rnnt_loss_pruned",
    "transducer_loss",
    "pruned_transducer_loss",
]

_RNNT_TYPES = ("regular", "modified", "constrained")
_REDUCTIONS = ("none", "mean", "sum")


# --------------------------------------------------------------------------- log-probs (px, py)


def fix_for_boundary(px: Tensor, boundary: Optional[Tensor] = None) -> Tensor:
    """Forbid symbols on each utterance's one-past-the-last frame: ``px[b, :, end_frame_b] = -inf``.

    Args:
      px: (B, S, T+1) float, regular-topology symbol log-probs; modified **in place**, as k2 does.
      boundary: optional (B, 4) int64 ``[begin_symbol, begin_frame, end_symbol, end_frame]``;
        without it ``px`` is returned unchanged (``px[:, :, T]`` is already -inf).

    Returns:
      ``px``.
    """
    if boundary is None:
        return px
    B, S, _ = px.shape
    col = boundary[:, 3].to(px.device).reshape(B, 1, 1).expand(B, S, 1)
    return px.scatter_(2, col, float("-inf"))


def get_rnnt_logprobs(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    rnnt_type: str = "regular",
    boundary: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """``(px, py)`` of the trivial joiner ``logits[b, t, s] = am[b, t] + lm[b, s]``.

    The (B, T, S+1, C) sum is never formed: normalisers come from one batched matmul of
    ``exp(lm)`` and ``exp(am)``.

    Args:
      lm: (B, S+1, C) float: prediction-network part of the unnormalised log-probs.
      am: (B, T, C) float: encoder part.
      symbols: (B, S) int64 in [0, C).
      termination_symbol: blank class id.
      rnnt_type: "regular" | "modified" | "constrained".
      boundary: optional (B, 4) int64; with "regular" it puts -inf at each end_frame.

    Returns:
      px: (B, S, T+1) for regular (column T is -inf), (B, S, T) otherwise; py: (B, S+1, T);
      float32 (float64 for float64 inputs): ``px[b, s, t]`` is the log-prob of emitting
      ``symbols[b, s]`` from lattice point (s, t), ``py[b, s, t]`` that of blank.
    """
    return get_rnnt_logprobs_smoothed(lm, am, symbols, termination_symbol, 0.0, 0.0, boundary, rnnt_type)


def get_rnnt_logprobs_smoothed(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    lm_only_scale: float = 0.1,
    am_only_scale: float = 0.1,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
) -> Tuple[Tensor, Tensor]:
    """``(px, py)`` of :func:`get_rnnt_logprobs` interpolated towards LM-only and AM-only log-probs.

    Each arc log-prob becomes ``(1 - lm_only_scale - am_only_scale) * joint
    + lm_only_scale * lm_only + am_only_scale * am_only``, where ``lm_only`` normalises ``lm``
    alone over C and ``am_only`` combines ``am`` with a unigram LM (the softmax of ``lm``
    averaged over batch and positions), as in k2.

    Args:
      lm: (B, S+1, C) float; am: (B, T, C) float; symbols: (B, S) int64 in [0, C).
      termination_symbol: blank class id.
      lm_only_scale, am_only_scale: interpolation weights, each in [0, 1], sum <= 1.
      boundary, rnnt_type: see :func:`get_rnnt_logprobs`.

    Returns:
      (px, py), shaped as in :func:`get_rnnt_logprobs`.
    """
    _check_common(rnnt_type, "none", termination_symbol, am.shape[-1])
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
    return _finish_px_py(px, py, boundary, rnnt_type)


def get_rnnt_logprobs_joint(
    logits: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    rnnt_type: str = "regular",
    boundary: Optional[Tensor] = None,
    *,
    inplace_grad: bool = False,
) -> Tuple[Tensor, Tensor]:
    """``(px, py)`` from the full joiner output.

    Args:
      logits: (B, T, S+1, C) float: raw (unnormalised) joiner output; log-softmax over C is
        applied inside, in cache-sized chunks (float16/bfloat16 are computed in float32).
      symbols: (B, S) int64 in [0, C).
      termination_symbol: blank class id.
      rnnt_type: "regular" | "modified" | "constrained".
      boundary: optional (B, 4) int64. k2 takes ``rnnt_type`` before ``boundary`` and
        fast_rnnt the reverse; both positional orders are accepted (told apart by type).
      inplace_grad: (myna only) backward writes the gradient into ``logits``' own memory,
        see :func:`rnnt_loss`.

    Returns:
      (px, py), shaped as in :func:`get_rnnt_logprobs`.
    """
    if isinstance(boundary, str) or isinstance(rnnt_type, Tensor) or rnnt_type is None:
        rnnt_type, boundary = ("regular" if boundary is None else boundary), rnnt_type  # fast_rnnt's order
    _check_common(rnnt_type, "none", termination_symbol, logits.shape[-1])
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
    return _finish_px_py(px, py, boundary, rnnt_type)


def get_rnnt_logprobs_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
) -> Tuple[Tensor, Tensor]:
    """``(px, py)`` on the full lattice from the joiner output on the pruned band.

    Args:
      logits: (B, T, s_range, C) float: raw joiner output on the band, ``logits[b, t, k]``
        belonging to symbol position ``ranges[b, t, k]``.
      symbols: (B, S) int64 in [0, C).
      ranges: (B, T, s_range) int64 from :func:`~myna.losses.get_rnnt_prune_ranges`.
      termination_symbol: blank class id.
      boundary, rnnt_type: see :func:`get_rnnt_logprobs`.

    Returns:
      (px, py), shaped as in :func:`get_rnnt_logprobs`; arcs outside the band are -inf.
    """
    _check_common(rnnt_type, "none", termination_symbol, logits.shape[-1])
    B, T, R, C, S = _check_pruned(logits, symbols, ranges)
    index = _band_symbols(symbols, ranges, termination_symbol)
    lp_blank, lp_sym = joint_log_probs(logits, index, termination_symbol)
    px, py = _band_to_lattice(lp_blank, lp_sym, ranges, S)
    return _finish_px_py(px, py, boundary, rnnt_type)


def get_hat_logprobs_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
) -> Tuple[Tensor, Tensor]:
    """``(px, py)`` of the Hybrid Autoregressive Transducer (HAT, arXiv:2003.07705) on the pruned band.

    HAT models blank as a Bernoulli variable and the symbols as a softmax over the non-blank
    classes: ``log P(blank) = logsigmoid(logits[..., 0])`` and, for a class c,
    ``log P(c) = log(1 - sigmoid(logits[..., 0])) + logits[..., c] - logsumexp(logits[..., 1:])``.
    Blank must be class 0, as in k2.

    Args:
      logits: (B, T, s_range, C) float, raw joiner output on the band (float16/bfloat16 are
        computed in float32).
      symbols: (B, S) int64 in [0, C).
      ranges: (B, T, s_range) int64 from :func:`~myna.losses.get_rnnt_prune_ranges`.
      termination_symbol: must be 0.
      boundary, rnnt_type: see :func:`get_rnnt_logprobs`.

    Returns:
      (px, py), shaped as in :func:`get_rnnt_logprobs`; arcs outside the band are -inf.

    Raises:
      ValueError: if ``termination_symbol != 0``, or on bad shapes or non-finite logits.
    """
    if termination_symbol != 0:
        raise ValueError(f"HAT needs the blank / termination symbol to be class 0, got {termination_symbol}")
    _check_common(rnnt_type, "none", termination_symbol, logits.shape[-1])
    B, T, R, C, S = _check_pruned(logits, symbols, ranges)
    _check_finite(logits, "logits")
    x = logits if logits.dtype == torch.float64 else logits.float()
    lp_blank = torch.nn.functional.logsigmoid(x[..., 0])  # (B, T, R)
    # log(1 - sigmoid(l0)) = logsigmoid(l0) - l0
    lp_nonblank = lp_blank - x[..., 0] - torch.logsumexp(x[..., 1:], dim=3)
    index = _band_symbols(symbols, ranges, termination_symbol)
    lp_sym = torch.gather(x, 3, index.unsqueeze(3)).squeeze(3) + lp_nonblank
    px, py = _band_to_lattice(lp_blank, lp_sym, ranges, S)
    return _finish_px_py(px, py, boundary, rnnt_type)


# --------------------------------------------------------------------------- losses


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
        :func:`rnnt_loss_simple` (fast_rnnt has this argument; k2's ``rnnt_loss`` does not).
      inplace_grad: (myna only, keyword) the backward pass overwrites ``logits`` with its own
        gradient instead of allocating a second (B, T, S+1, C) buffer, as optimized_transducer
        does. Use it only when nothing reads ``logits`` after backward (float32/float64
        contiguous logits; ignored otherwise).

    Returns:
      Loss: (B,) for reduction "none", else a scalar; ``(loss, (px_grad, py_grad))`` with
      ``return_grad``.

    Memory: besides ``logits`` and its gradient, only (B, T, S+1)-sized tensors are created;
    with ``inplace_grad`` the gradient shares ``logits``' memory.
    """
    _check_common(rnnt_type, reduction, termination_symbol, logits.shape[-1])
    px, py = get_rnnt_logprobs_joint(
        logits, symbols, termination_symbol, rnnt_type, boundary, inplace_grad=inplace_grad
    )
    return _score(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


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

    Args:
      lm: (B, S+1, C) float, i.e. batch, symbol_seq_len+1, num_classes: prediction-network part.
      am: (B, T, C) float, i.e. batch, frames, num_classes: encoder part.
      symbols: (B, S) int64 in [0, C).
      termination_symbol: blank class id.
      boundary, rnnt_type, delay_penalty, reduction: see :func:`rnnt_loss`.
      return_grad: also return ``(px_grad, py_grad)``, the occupation probabilities (in
        [0, 1]) of the symbol and blank arcs, shaped like px (B, S, T+1) (regular) or
        (B, S, T), and py (B, S+1, T); they are the gradient of the summed per-utterance
        log-likelihood (i.e. of ``-loss`` with reduction "none") and feed
        :func:`~myna.losses.get_rnnt_prune_ranges`.

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
    """:func:`rnnt_loss_simple` with the arc log-probs of :func:`get_rnnt_logprobs_smoothed`.

    It regularises the simple loss of a pruned Transducer: the LM-only term trains the
    prediction network as a language model.

    Args:
      lm: (B, S+1, C) float; am: (B, T, C) float; symbols: (B, S) int64.
      lm_only_scale, am_only_scale: interpolation weights, each in [0, 1], sum <= 1.
      Others: see :func:`rnnt_loss_simple`.

    Returns:
      loss, or ``(loss, (px_grad, py_grad))`` if ``return_grad``.
    """
    _check_common(rnnt_type, reduction, termination_symbol, am.shape[-1])
    px, py = get_rnnt_logprobs_smoothed(
        lm, am, symbols, termination_symbol, lm_only_scale, am_only_scale, boundary, rnnt_type
    )
    return _score(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


def rnnt_loss_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: Optional[str] = "mean",
    use_hat_loss: bool = False,
    return_grad: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
    """The RNN-T loss over the pruned band only.

    Args:
      logits: (B, T, s_range, C) float, i.e. batch, frames, prune_range, num_classes: raw joiner
        output on the band, ``logits[b, t, k]`` belonging to symbol position ``ranges[b, t, k]``.
      symbols: (B, S) int64 in [0, C).
      ranges: (B, T, s_range) int64 from :func:`~myna.losses.get_rnnt_prune_ranges`.
      termination_symbol, boundary, rnnt_type, delay_penalty, reduction: see :func:`rnnt_loss`.
      use_hat_loss: the HAT loss (:func:`get_hat_logprobs_pruned`; blank must be class 0)
        instead of the softmax RNN-T loss, as k2's argument of that name.
      return_grad: also return the arc occupancies on the full (S+1, T+1) lattice (fast_rnnt
        has this argument, k2 does not; it comes after ``use_hat_loss`` here, so pass it by
        keyword).

    Returns:
      Loss: (B,) for reduction "none", else a scalar; ``(loss, (px_grad, py_grad))`` with
      ``return_grad``. Arcs outside the band have log-prob -inf; with ``s_range >= S + 1``
      this equals :func:`rnnt_loss`.
    """
    _check_common(rnnt_type, reduction, termination_symbol, logits.shape[-1])
    get = get_hat_logprobs_pruned if use_hat_loss else get_rnnt_logprobs_pruned
    px, py = get(logits, symbols, ranges, termination_symbol, boundary, rnnt_type)
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


def _check_pruned(logits: Tensor, symbols: Tensor, ranges: Tensor) -> Tuple[int, int, int, int, int]:
    """(B, T, s_range, C, S) after checking pruned logits, symbols and ranges."""
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
    return B, T, R, C, S


def _band_symbols(symbols: Tensor, ranges: Tensor, blank: int) -> Tensor:
    """(B, T, R) class of the symbol arc leaving each band cell (blank at position S)."""
    B, T, _ = ranges.shape
    S = symbols.shape[1]
    padded = torch.cat((symbols, symbols.new_full((B, 1), blank)), dim=1)  # (B, S+1)
    return torch.gather(padded.unsqueeze(1).expand(B, T, S + 1), 2, ranges)


def _band_to_lattice(lp_blank: Tensor, lp_sym: Tensor, ranges: Tensor, S: int) -> Tuple[Tensor, Tensor]:
    """Band log-probs (B, T, R) -> px (B, S, T) and py (B, S+1, T), -inf outside the band."""
    B, T, _ = ranges.shape
    neg = lp_blank.new_full((B, T, S + 1), float("-inf"))
    px = torch.scatter(neg, 2, ranges, lp_sym)[:, :, :S].transpose(1, 2)
    py = torch.scatter(neg, 2, ranges, lp_blank).transpose(1, 2)
    return px, py
