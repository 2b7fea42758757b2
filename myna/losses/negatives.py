"""Negative sampling for contrastive objectives, in the two conventions myna reproduces.

- **wav2vec 2.0** (fairseq, Hugging Face, NVIDIA DLE), :func:`sample_negatives_wav2vec2`: for
  every masked frame, K distractors drawn uniformly *with replacement* from the other masked
  frames of the same utterance (the positive itself is excluded by drawing from M-1 slots and
  shifting draws at or above the positive's slot up by one).
- **NeMo** (``ContrastiveLoss.sample_negatives``), :func:`sample_negatives_nemo`: for each of
  ``num`` targets, K indices into ``high`` candidates drawn by ``torch.multinomial`` *without
  replacement*; the positive is not excluded. In NeMo's same-utterance mode one draw of time
  indices serves every utterance of the batch; its batch-wide modes draw over all B*T' candidates.

Equal negatives (a distractor whose vector equals the positive) are not removed here; the
contrastive logits give them -inf (:func:`myna.losses.contrastive.contrastive_logits`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

__all__ = ["sample_negatives_wav2vec2", "sample_negatives_nemo", "gather_negatives"]


def sample_negatives_wav2vec2(mask: np.ndarray | torch.Tensor, num_negatives: int,
                              rng: Optional[np.random.RandomState] = None) -> torch.Tensor:
    """Distractor indices for every masked frame (Hugging Face's ``_sample_negative_indices``).

    For row b with masked frames ``m_0 < ... < m_{M-1}``, each masked slot j draws K slots from
    ``randint(0, M-1)``, adds 1 where the draw is ``>= j`` (so j itself never comes and the
    others stay uniform), maps slots to frame indices and adds ``b * T``. Draws come from numpy
    (``rng`` or the global generator), one ``randint`` call per row, exactly as HF.

    :param mask: (B, T) bool, True = masked frame.
    :param num_negatives: K.
    :param rng: numpy ``RandomState``; None uses numpy's global generator.
    :return: (B, T, K) int64 indices into the flattened (B*T) frames. Rows of unmasked frames
        hold only the row offset ``b*T`` and are not used.
    :raises ValueError: when a row has fewer than 2 masked frames (it names the row).
    """
    mask = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    mask = mask.astype(bool)
    rng = np.random if rng is None else rng
    batch, time = mask.shape
    frames = np.arange(time)
    out = np.zeros((batch, time, num_negatives), dtype=np.int64)
    for b in range(batch):
        masked = frames[mask[b]]
        count = len(masked)
        if count < 2:
            raise ValueError(f"batch row {b} has {count} masked frame(s); contrastive negatives need at least 2")
        own = np.broadcast_to(np.arange(count)[:, None], (count, num_negatives))
        draws = rng.randint(0, count - 1, size=(count, num_negatives))
        draws[draws >= own] += 1
        out[b][mask[b]] = masked[draws]
        out[b] += b * time
    return torch.from_numpy(out)


def sample_negatives_nemo(num: int, high: int, num_negatives: int, replacement_if_short: bool = False,
                          generator: Optional[torch.Generator] = None,
                          device: Optional[torch.device] = None) -> torch.Tensor:
    """NeMo's draw: ``torch.multinomial(ones(num, high), K, replacement=False)``.

    :param num: targets to draw for (NeMo: masked steps per utterance in same-utterance mode, or
        all masked steps of the batch).
    :param high: candidates to draw from; index ``i`` may equal the target's own position.
    :param num_negatives: K.
    :param replacement_if_short: when ``high < K``, draw with replacement as current NeMo does;
        False raises instead (NeMo once crashed here, #4587).
    :param generator: optional torch generator (NeMo uses the global one).
    :return: (num, K) int64.
    :raises ValueError: ``high < K`` without ``replacement_if_short``, or ``high == 0``.
    """
    if high <= 0:
        raise ValueError(f"no candidates to sample {num_negatives} negatives from")
    replacement = high < num_negatives
    if replacement and not replacement_if_short:
        raise ValueError(f"num_negatives={num_negatives} is more than the {high} candidate steps")
    weights = torch.ones((num, high), device=device)
    return torch.multinomial(weights, num_negatives, replacement=replacement, generator=generator)


def gather_negatives(targets: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Distractor vectors for flattened-frame indices.

    :param targets: (B, T, C) float vectors (e.g. projected quantized targets).
    :param indices: (B, T, K) int64 indices into the flattened (B*T) frames.
    :return: (K, B, T, C), the layout :func:`myna.losses.contrastive.contrastive_logits` takes.
    """
    batch, time, channels = targets.shape
    negatives = targets.reshape(batch * time, channels)[indices.reshape(-1)]
    return negatives.view(batch, time, -1, channels).permute(2, 0, 1, 3)
