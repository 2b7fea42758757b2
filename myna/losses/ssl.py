"""Tensor functions of NeMo's self-supervised losses: masks found by value, masked steps,
spectrogram grouping, run-length id reduction, the MLM loss.

NeMo's SSL losses do not receive the masks the augmentation drew; they find them again by
value (a cell within 1e-5 of 0 is masked) and call a decoder step masked when more than
``mask_threshold`` of its cells are. These functions keep that contract, on myna's (B, T, F)
layout.

>>> spec = torch.ones(1, 8, 2); spec[0, :4] = 0
>>> masks = masks_by_value(spec, torch.tensor([8]))
>>> masked_steps(masks, 2).tolist()
[[True, False]]
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["masks_by_value", "group_steps", "masked_steps", "masked_steps_by_factor", "reduce_ids",
           "mlm_loss", "StepCountError"]


class StepCountError(ValueError):
    """Time steps of spectrogram and decoder do not fit together (``combine_time_steps``)."""


def masks_by_value(masked: torch.Tensor, lengths: torch.Tensor, tol: float = 1e-5) -> torch.Tensor:
    """NeMo's ``spec_masks``: 1.0 where ``|masked| < tol``, 0 at frames >= length.

    :param masked: (B, T, F) float, features after masking.
    :param lengths: (B,) int valid frames.
    :return: (B, T, F) float32 0/1.
    """
    masks = ((masked > -tol) & (masked < tol)).float()
    valid = torch.arange(masked.shape[1], device=masked.device)[None, :] < lengths.to(masked.device)[:, None]
    return masks * valid[:, :, None]


def group_steps(x: torch.Tensor, steps: int) -> torch.Tensor:
    """Zero-pad time to a multiple of ``steps`` and fold the frames of each step into channels.

    :param x: (B, T, F). :param steps: T', decoder steps.
    :return: (B, T', r*F) with ``r = ceil(T / T')``; ``out[b, t, k*F + f] = x[b, r*t + k, f]``.
    """
    batch, frames, _ = x.shape
    padded = math.ceil(frames / steps) * steps
    if padded > frames:
        x = F.pad(x, (0, 0, 0, padded - frames))
    return x.reshape(batch, steps, -1)


def masked_steps(spec_masks: torch.Tensor, steps: int, threshold: float = 0.8) -> torch.Tensor:
    """Decoder steps counted as masked (ContrastiveLoss): grouped masks' mean > ``threshold``.

    :param spec_masks: (B, T, F) float 0/1. :param steps: T'.
    :return: (B, T') bool.
    """
    return group_steps(spec_masks, steps).mean(-1) > threshold


def masked_steps_by_factor(spec_masks: torch.Tensor, combine_time_steps: int, threshold: float = 0.8) -> torch.Tensor:
    """Decoder steps counted as masked (MLMLoss): groups of ``combine_time_steps`` frames.

    :param spec_masks: (B, T, F) float 0/1, T divisible by ``combine_time_steps``.
    :return: (B, T // combine_time_steps) bool.
    :raises StepCountError: T is not a multiple of ``combine_time_steps``.
    """
    batch, frames, _ = spec_masks.shape
    if frames % combine_time_steps:
        raise StepCountError(f"combine_time_steps={combine_time_steps} does not divide the padded spectrogram "
                             f"length {frames}; set the preprocessor's pad_to to a multiple of it")
    return spec_masks.reshape(batch, frames // combine_time_steps, -1).mean(-1) > threshold


def reduce_ids(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Collapse runs of equal consecutive ids in each row (NeMo's ``reduce_ids``).

    All T' steps count, padded ones included (as NeMo).

    :param ids: (B, T') int64.
    :return: (reduced, lengths): (B, U) int64 zero-padded with U the longest row's run count,
        and (B,) int64 run counts.

    >>> reduce_ids(torch.tensor([[3, 3, 1, 1, 3], [2, 2, 2, 2, 2]]))
    (tensor([[3, 1, 3],
            [2, 0, 0]]), tensor([3, 1]))
    """
    change = (ids[:, 1:] != ids[:, :-1]).long()
    run = torch.cat([torch.zeros_like(ids[:, :1]), change.cumsum(1)], dim=1)  # (B, T') run index
    reduced = torch.zeros_like(ids).scatter_(1, run, ids)
    lengths = run[:, -1] + 1
    return reduced[:, :int(lengths.max())], lengths


def mlm_loss(log_probs: torch.Tensor, targets: torch.Tensor, step_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """NeMo's MLMLoss: mean NLL of the target ids over all masked steps of the batch.

    :param log_probs: (B, T', C) float. :param targets: (B, U <= T') int64, right-padded with 0.
    :param step_mask: (B, T') bool masked steps; None counts every step.
    :return: scalar float32 (NaN when no step is masked, as NeMo's NLLLoss gives).
    """
    steps = log_probs.shape[1]
    if targets.shape[1] > steps:
        raise StepCountError(f"MLM targets have {targets.shape[1]} steps but the decoder gives {steps}")
    targets = F.pad(targets, (0, steps - targets.shape[1]))
    if step_mask is None:
        step_mask = torch.ones(log_probs.shape[:2], dtype=torch.bool, device=log_probs.device)
    return F.nll_loss(log_probs[step_mask].float(), targets[step_mask].long())
