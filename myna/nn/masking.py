"""Span masks for masked prediction (wav2vec 2.0) and fine-tuning (SpecAugment-like time masks).

Two algorithms, each reproducing its reference exactly, random draws included, so a recorded
mask replays from the same seed:

- :func:`compute_mask_indices_hf` is Hugging Face's ``_compute_mask_indices``: one rounding draw
  per call, span starts drawn without replacement per row, every row padded to the same number
  of spans by repeating its first start (overlaps allowed, so rows mask different frame counts).
- :func:`compute_mask_indices_fairseq` is fairseq's / NVIDIA DLE's ``compute_mask_indices``
  (static span lengths, overlaps allowed): a fresh rounding draw per row and, with
  ``require_same_masks``, every row subsampled to the batch's smallest masked-frame count, so
  rows mask the same number of frames.

Both draw from a numpy ``RandomState`` (default: numpy's global one, as the references do), so
``np.random.seed(s)`` followed by the reference call and ``RandomState(s)`` passed here give the
same masks. Masks are ``True`` where a frame is masked.

>>> rng = np.random.RandomState(0)
>>> m = compute_mask_indices_fairseq((2, 50), np.array([0, 10]), mask_prob=0.65, mask_length=10,
...                                  min_masks=2, rng=rng)
>>> m.sum(1).tolist()[0] == m.sum(1).tolist()[1]
True
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["compute_mask_indices_hf", "compute_mask_indices_fairseq", "min_frames_for_masking"]


def _lengths(batch_size: int, seq_len: int, lengths: Optional[Sequence[int]]) -> list[int]:
    if lengths is None:
        return [seq_len] * batch_size
    lengths = [int(x) for x in np.asarray(lengths).reshape(-1)]
    if len(lengths) != batch_size:
        raise ValueError(f"{len(lengths)} lengths for a batch of {batch_size}")
    if any(x < 0 or x > seq_len for x in lengths):
        raise ValueError(f"lengths {lengths} must lie in [0, {seq_len}]")
    return lengths


def compute_mask_indices_hf(shape: tuple[int, int], mask_prob: float, mask_length: int,
                            lengths: Optional[Sequence[int]] = None, min_masks: int = 0,
                            rng: Optional[np.random.RandomState] = None) -> np.ndarray:
    """Hugging Face's span mask (``transformers`` ``_compute_mask_indices``), draw for draw.

    The number of spans of a row of length L is ``max(int(mask_prob * L / mask_length + eps),
    min_masks)`` with one ``eps ~ U[0, 1)`` per call, capped so that the spans fit (``<= T //
    mask_length`` and ``<= L - mask_length + 1``). Starts are drawn without replacement from
    ``[0, L - mask_length]``; rows with fewer spans than the longest possible row repeat their
    first start. Spans may overlap, so rows mask different numbers of frames.

    :param shape: (B, T).
    :param mask_prob: expected fraction of frames covered by span starts times ``mask_length``.
    :param mask_length: frames per span (>= 1, <= T).
    :param lengths: (B,) valid frames per row (HF derives them from the attention mask); None:
        every row has T frames.
    :param min_masks: minimum number of spans per row (HF ``mask_time_min_masks``).
    :param rng: numpy ``RandomState``; None uses numpy's global generator, as HF does.
    :return: (B, T) bool numpy array, True = masked.
    """
    batch_size, seq_len = shape
    if mask_length < 1:
        raise ValueError(f"mask_length={mask_length} must be >= 1")
    if mask_length > seq_len:
        raise ValueError(f"mask_length={mask_length} is longer than the sequence ({seq_len} frames)")
    rng = np.random if rng is None else rng
    eps = rng.rand(1).item()

    def num_spans(length: int) -> int:
        n = max(int(mask_prob * length / mask_length + eps), min_masks)
        if n * mask_length > seq_len:
            n = seq_len // mask_length
        if length - (mask_length - 1) < n:
            n = max(length - (mask_length - 1), 0)
        return n

    mask = np.zeros((batch_size, seq_len), dtype=bool)
    max_spans = num_spans(seq_len)
    if max_spans == 0:
        return mask
    starts = []
    for length in _lengths(batch_size, seq_len, lengths):
        n = num_spans(length)
        row = rng.choice(np.arange(length - (mask_length - 1)), n, replace=False)
        dummy = seq_len - 1 if len(row) == 0 else row[0]
        starts.append(np.concatenate([row, np.full(max_spans - n, dummy, dtype=np.int64)]))
    spans = np.asarray(starts)[:, :, None] + np.arange(mask_length)[None, None, :]  # (B, S, mask_length)
    spans = np.minimum(spans.reshape(batch_size, -1), seq_len - 1)
    np.put_along_axis(mask, spans, True, axis=-1)
    return mask


def compute_mask_indices_fairseq(shape: tuple[int, int], padding_counts: Optional[Sequence[int]],
                                 mask_prob: float, mask_length: int, min_masks: int = 0,
                                 require_same_masks: bool = True,
                                 rng: Optional[np.random.RandomState] = None) -> np.ndarray:
    """fairseq's / DLE's span mask (``compute_mask_indices`` with static spans, overlaps allowed).

    One rounding draw is taken for the whole batch (used when no row is padded), then for each
    row of unpadded length ``sz``: ``num = max(min_masks, int(mask_prob * sz / mask_length +
    u))`` with a fresh ``u ~ U[0, 1)`` when padding is given; the span length shrinks to ``sz -
    num - 1`` if ``sz - mask_length <= num``; starts are drawn without replacement from
    ``[0, sz - mask_length)``; the union of spans is cut at ``sz``. With ``require_same_masks``
    every row is then subsampled (without replacement) to the smallest row's frame count, so all
    rows mask the same number of frames.

    :param shape: (B, T).
    :param padding_counts: (B,) padded frames at the end of each row, or None (no padding; DLE
        passes None when no row is padded).
    :param mask_prob: as in fairseq (0.65 for pre-training).
    :param mask_length: frames per span (10 for pre-training).
    :param min_masks: minimum spans per row (2 in wav2vec 2.0 pre-training).
    :param require_same_masks: equalise the masked-frame counts of the rows.
    :param rng: numpy ``RandomState``; None uses numpy's global generator, as fairseq does.
    :return: (B, T) bool numpy array, True = masked. A row shorter than its spans may end up
        with few or no masked frames, and with ``require_same_masks`` so does every other row:
        callers check lengths first (:func:`min_frames_for_masking`).
    """
    batch_size, all_sz = shape
    rng = np.random if rng is None else rng
    mask = np.zeros((batch_size, all_sz), dtype=bool)
    all_num_mask = max(min_masks, int(mask_prob * all_sz / float(mask_length) + rng.rand()))
    rows = []
    for i in range(batch_size):
        if padding_counts is not None:
            sz = all_sz - int(padding_counts[i])
            num_mask = max(min_masks, int(mask_prob * sz / float(mask_length) + rng.rand()))
        else:
            sz, num_mask = all_sz, all_num_mask
        if num_mask == 0:
            rows.append(np.zeros(0, dtype=np.int64))
            continue
        # fairseq narrows only the range of starts for short rows; spans keep mask_length frames
        # and are cut at sz below (so a very short row can end up with few or no masked frames).
        start_room = mask_length
        if sz - start_room <= num_mask:
            start_room = sz - num_mask - 1
        starts = rng.choice(sz - start_room, num_mask, replace=False)
        idx = (starts[:, None] + np.arange(mask_length)[None, :]).reshape(-1)
        rows.append(np.unique(idx[idx < sz]))
    target = min(len(r) for r in rows)
    for i, idx in enumerate(rows):
        if len(idx) > target and require_same_masks:
            idx = rng.choice(idx, target, replace=False)
        mask[i, idx] = True
    return mask


def min_frames_for_masking(mask_length: int, min_masks: int, num_negatives_need: int = 2) -> int:
    """Shortest row (in frames) that holds ``min_masks`` distinct span starts of ``mask_length``
    frames, and so at least ``num_negatives_need`` masked frames (a positive and one negative).

    Both algorithms need ``L - mask_length + 1 >= min_masks`` for the spans to be placed as asked;
    a row shorter than ``mask_length`` gets no span at all.
    """
    return max(mask_length + max(min_masks, 1) - 1, num_negatives_need, 1)
