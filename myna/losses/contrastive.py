"""Contrastive (InfoNCE) losses of wav2vec 2.0 and of NeMo's SSL, on one shared core.

The core (:func:`contrastive_logits` + :func:`info_nce`) scores each prediction against its
positive and K distractors by cosine similarity over a temperature, sets -inf where a
distractor equals the positive, and takes the cross-entropy with target 0. The two objectives
differ only in what they add and how they normalise:

- :func:`wav2vec2_loss` (fairseq / DLE criterion, Hugging Face's ``Wav2Vec2ForPreTraining``):
  ``total = CE_sum + a * L_d * S + b * pen * S`` over S masked frames, with the diversity loss
  ``L_d = (G*V - perplexity) / (G*V)`` and the feature penalty ``pen = mean(conv_features^2)``
  (``a, b = 0.1, 10``; HF has no penalty). fairseq divides gradients by S, so the optimised value
  is ``total / S``: a per-masked-frame loss that no batch size changes.
- :func:`nemo_contrastive_loss` (NeMo's ``ContrastiveLoss``): ``(CE_sum + w * prob_ppl_loss *
  N) * multiplier / B`` over N predictions of a batch of B utterances.

>>> pred, pos = torch.randn(6, 32), torch.randn(6, 32)
>>> negs = torch.randn(10, 6, 32)
>>> logits = contrastive_logits(pred, pos, negs, temperature=0.1)   # (11, 6)
>>> ce, correct = info_nce(logits)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["contrastive_logits", "info_nce", "diversity_loss", "feature_penalty", "Wav2Vec2Loss",
           "wav2vec2_loss", "nemo_contrastive_loss"]


def contrastive_logits(predictions: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                       temperature: float = 0.1) -> torch.Tensor:
    """Cosine-similarity logits of predictions against [positive; negatives], in float32.

    :param predictions: (*, C) float, e.g. (B, M, C) projected context vectors of masked frames.
    :param positives: (*, C) float, the true targets (projected quantized features).
    :param negatives: (K, *, C) float distractors.
    :param temperature: kappa; logits are ``cos / kappa`` (0.1 in wav2vec 2.0 and NeMo).
    :return: (1+K, *) float32; row 0 scores the positive; a negative equal to the positive in
        every component gets -inf (it cannot be told apart, so it must not count as a distractor).
    """
    neg_is_pos = (positives.unsqueeze(0) == negatives).all(-1)  # (K, *)
    candidates = torch.cat([positives.unsqueeze(0), negatives], dim=0)
    logits = torch.cosine_similarity(predictions.float().unsqueeze(0), candidates.float(), dim=-1) / temperature
    if bool(neg_is_pos.any()):
        blocked = torch.cat([torch.zeros_like(neg_is_pos[:1]), neg_is_pos], dim=0)
        logits = logits.masked_fill(blocked, float("-inf"))
    return logits


def info_nce(logits: torch.Tensor, reduction: str = "sum") -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of contrastive logits with the positive (row 0) as target.

    :param logits: (1+K, N) float; extra trailing dimensions are flattened into N.
    :param reduction: ``"sum"`` (wav2vec 2.0, NeMo) or ``"mean"``.
    :return: (loss, correct): the reduced float32 loss and the int64 count of predictions whose
        positive scores strictly highest (fairseq counts a row whose logits are all equal as wrong).
    """
    logits = logits.reshape(logits.shape[0], -1).transpose(0, 1).float()  # (N, 1+K)
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    loss = F.cross_entropy(logits, target, reduction=reduction)
    with torch.no_grad():
        best, worst = logits.argmax(-1), logits.argmin(-1)
        correct = ((best == 0) & ~(worst == 0)).sum()
    return loss, correct


def diversity_loss(perplexity: torch.Tensor, num_codevectors: int) -> torch.Tensor:
    """``(G*V - perplexity) / (G*V)``: 0 when all G*V codevectors are used equally, near 1 at collapse."""
    return (num_codevectors - perplexity) / num_codevectors


def feature_penalty(conv_features: torch.Tensor) -> torch.Tensor:
    """fairseq's ``features_pen``: mean of the squared raw conv-encoder output (B, C, T), float32."""
    return conv_features.float().pow(2).mean()


@dataclass
class Wav2Vec2Loss:
    """The terms of the wav2vec 2.0 objective over S masked frames.

    Attributes:
        loss: ``total / S``, the value to optimise (per masked frame; no batch-size constant).
        total: ``contrastive + diversity_weight * diversity * S + feature_penalty_weight * pen *
            S``, as fairseq's / DLE's criterion reports it (Hugging Face's ``loss`` with no penalty).
        contrastive: summed cross-entropy over the S masked frames.
        diversity: ``(G*V - ppl) / (G*V)`` (unscaled; HF reports ``diversity * S``).
        feature_penalty: ``mean(conv_features^2)`` (0 when not used).
        num_masked: S.
        correct: masked frames whose positive scored highest.
    """

    loss: torch.Tensor
    total: torch.Tensor
    contrastive: torch.Tensor
    diversity: torch.Tensor
    feature_penalty: torch.Tensor
    num_masked: int
    correct: torch.Tensor

    @property
    def accuracy(self) -> torch.Tensor:
        """Fraction of masked frames whose positive scored highest."""
        return self.correct.float() / max(self.num_masked, 1)


def wav2vec2_loss(logits: torch.Tensor, perplexity: torch.Tensor, num_codevectors: int,
                  conv_features: Optional[torch.Tensor] = None, diversity_weight: float = 0.1,
                  feature_penalty_weight: float = 10.0) -> Wav2Vec2Loss:
    """The wav2vec 2.0 pre-training objective from contrastive logits.

    :param logits: (1+K, S) or (1+K, B, M) contrastive logits of the S masked frames.
    :param perplexity: scalar codebook perplexity (fairseq: the softmax's over masked frames).
    :param num_codevectors: G * V.
    :param conv_features: (B, C, T) raw conv-encoder output for the feature penalty, or None.
    :param diversity_weight: a (0.1).
    :param feature_penalty_weight: b (10 in fairseq / DLE; Hugging Face has none).
    :return: :class:`Wav2Vec2Loss`.
    """
    contrastive, correct = info_nce(logits, reduction="sum")
    num_masked = int(logits[0].numel())
    diversity = diversity_loss(perplexity, num_codevectors)
    penalty = feature_penalty(conv_features) if conv_features is not None else contrastive.new_zeros(())
    total = contrastive + diversity_weight * diversity * num_masked
    if conv_features is not None and feature_penalty_weight:
        total = total + feature_penalty_weight * penalty * num_masked
    return Wav2Vec2Loss(loss=total / max(num_masked, 1), total=total, contrastive=contrastive,
                        diversity=diversity, feature_penalty=penalty, num_masked=num_masked, correct=correct)


def nemo_contrastive_loss(logits: torch.Tensor, batch_size: int, prob_ppl_loss: Optional[torch.Tensor] = None,
                          prob_ppl_weight: float = 0.1, multiplier: float = 16.0,
                          reduction: str = "sum") -> torch.Tensor:
    """NeMo's ``ContrastiveLoss`` value from its similarity logits.

    :param logits: (1+K, N) contrastive logits of the N predictions of the batch.
    :param batch_size: B, utterances in the batch.
    :param prob_ppl_loss: the quantizer's ``(G*V - ppl) / (G*V)`` (None for linear targets).
    :param prob_ppl_weight: weight of the codebook term (added as ``w * prob_ppl_loss * N``).
    :param multiplier: NeMo's final factor (16), applied as ``multiplier / B``.
    :param reduction: cross-entropy reduction (NeMo's ``reduce``).
    :return: scalar float32.
    """
    loss, _ = info_nce(logits, reduction=reduction)
    if prob_ppl_loss is not None and prob_ppl_weight != 0:
        loss = loss + prob_ppl_weight * prob_ppl_loss * logits[0].numel()
    return loss * (multiplier / batch_size)
