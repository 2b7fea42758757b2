"""Negative sampling: wav2vec 2.0's (same utterance, positive excluded) and NeMo's (multinomial)."""

import numpy as np
import pytest
import torch

from myna.losses.negatives import gather_negatives, sample_negatives_nemo, sample_negatives_wav2vec2


def test_wav2vec2_negatives_come_from_the_same_utterances_other_masked_frames():
    rng = np.random.RandomState(0)
    mask = np.zeros((3, 40), dtype=bool)
    mask[0, 5:15] = True
    mask[1, [1, 2, 30, 31, 32]] = True
    mask[2, 0:40:3] = True
    neg = sample_negatives_wav2vec2(mask, 20, rng=rng)
    assert neg.shape == (3, 40, 20) and neg.dtype == torch.int64
    for b in range(3):
        frames = np.flatnonzero(mask[b])
        for t in frames:
            drawn = neg[b, t].numpy() - b * 40
            assert set(drawn) <= set(frames) - {t}  # same row, masked, never the positive
    # with enough draws every other masked frame shows up: the distribution covers them all
    big = sample_negatives_wav2vec2(mask[:1], 500, rng=rng)
    assert set(big[0, 5].numpy()) == set(range(6, 15))


def test_wav2vec2_negatives_need_two_masked_frames():
    mask = np.zeros((2, 10), dtype=bool)
    mask[0, :3] = True
    mask[1, 4] = True
    with pytest.raises(ValueError, match="batch row 1 has 1 masked"):
        sample_negatives_wav2vec2(mask, 5, rng=np.random.RandomState(0))


def test_nemo_negatives_are_drawn_without_replacement():
    torch.manual_seed(0)
    idx = sample_negatives_nemo(30, 12, 10)
    assert idx.shape == (30, 10)
    assert all(len(set(row.tolist())) == 10 for row in idx)
    assert idx.min() >= 0 and idx.max() < 12
    assert (idx == torch.arange(30)[:, None].clamp(max=11)).any()  # the positive's own index may come


def test_nemo_negatives_more_than_candidates():
    with pytest.raises(ValueError, match="num_negatives=10 is more than the 4"):
        sample_negatives_nemo(4, 4, 10)
    assert sample_negatives_nemo(4, 4, 10, replacement_if_short=True).shape == (4, 10)
    with pytest.raises(ValueError, match="no candidates"):
        sample_negatives_nemo(4, 0, 2)


def test_gather_negatives_layout():
    targets = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    idx = torch.tensor([[[1, 2], [0, 2], [0, 1]], [[4, 5], [3, 5], [3, 4]]])
    negs = gather_negatives(targets, idx)
    assert negs.shape == (2, 2, 3, 2)
    assert torch.equal(negs[1, 1, 0], targets[1, 2])
