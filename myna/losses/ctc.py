"""CTC loss with NeMo's ``mean_batch`` reduction."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ctc_loss_mean_batch"]


def ctc_loss_mean_batch(log_probs: torch.Tensor, lengths: torch.Tensor, tokens: torch.Tensor,
                        token_lengths: torch.Tensor, blank: int) -> torch.Tensor:
    """NeMo's CTC ``mean_batch``: per-utterance summed NLL averaged over the batch, infinities zeroed.

    Unlike torch's ``reduction="mean"``, the per-utterance loss is not divided by its target length.

    Args:
        log_probs: (B, T, V+1) float log-probabilities; lengths: (B,) int64 valid frames.
        tokens: (B, U) int64 targets; token_lengths: (B,) int64.
        blank: blank class id.

    Returns:
        Scalar float32 loss.
    """
    per_utt = F.ctc_loss(log_probs.transpose(0, 1).float(), tokens.long(), lengths, token_lengths,
                         blank=blank, reduction="none", zero_infinity=True)
    return per_utt.mean()
