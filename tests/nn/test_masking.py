"""Span masks: HF's and fairseq's algorithms, their counts, and their use of the numpy generator."""

import numpy as np
import pytest

from myna.nn.masking import compute_mask_indices_fairseq, compute_mask_indices_hf, min_frames_for_masking


def test_hf_mask_span_counts_and_valid_region():
    rng = np.random.RandomState(3)
    lengths = [100, 60, 25]
    mask = compute_mask_indices_hf((3, 100), mask_prob=0.5, mask_length=5, lengths=lengths, min_masks=2, rng=rng)
    assert mask.dtype == bool and mask.shape == (3, 100)
    for row, length in enumerate(lengths):
        assert not mask[row, length:].any()  # spans start and end inside the row
        assert mask[row].sum() >= 5  # at least one whole span (overlaps allowed)


def test_hf_mask_uses_the_generator_like_the_reference():
    # one rand() for the rounding, then one choice() per row: the same state gives the same mask
    a = compute_mask_indices_hf((2, 50), 0.3, 4, None, 2, rng=np.random.RandomState(11))
    np.random.seed(11)
    b = compute_mask_indices_hf((2, 50), 0.3, 4, None, 2)
    assert np.array_equal(a, b)


def test_hf_mask_errors_and_empty_cases():
    with pytest.raises(ValueError, match="longer than the sequence"):
        compute_mask_indices_hf((1, 4), 0.5, 5)
    with pytest.raises(ValueError, match="mask_length"):
        compute_mask_indices_hf((1, 4), 0.5, 0)
    assert not compute_mask_indices_hf((2, 10), 0.0, 3, min_masks=0, rng=np.random.RandomState(0)).any()


def test_fairseq_same_masks_give_equal_counts_inside_lengths():
    rng = np.random.RandomState(5)
    padding = [0, 30, 55]
    mask = compute_mask_indices_fairseq((3, 120), padding, mask_prob=0.65, mask_length=10, min_masks=2, rng=rng)
    counts = mask.sum(1)
    assert len(set(counts.tolist())) == 1 and counts[0] > 0
    for row, pad in enumerate(padding):
        assert not mask[row, 120 - pad:].any()


def test_fairseq_without_same_masks_keeps_each_rows_spans():
    rng = np.random.RandomState(5)
    mask = compute_mask_indices_fairseq((2, 200), [0, 150], 0.65, 10, 2, require_same_masks=False, rng=rng)
    assert mask[0].sum() > mask[1].sum()


def test_fairseq_rows_of_exactly_the_minimum_length_get_their_spans():
    need = min_frames_for_masking(mask_length=10, min_masks=2)
    assert need == 11
    mask = compute_mask_indices_fairseq((1, need), None, 0.65, 10, 2, rng=np.random.RandomState(0))
    assert mask.sum() >= 2
