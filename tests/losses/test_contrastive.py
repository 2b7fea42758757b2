"""Contrastive losses: the shared core, wav2vec 2.0's normalisation and NeMo's variant."""

import pytest
import torch
import torch.nn.functional as F

from myna.losses.contrastive import contrastive_logits, info_nce, nemo_contrastive_loss, wav2vec2_loss


def test_logits_are_cosine_over_temperature_with_equal_negatives_blocked():
    torch.manual_seed(0)
    pred, pos = torch.randn(5, 8), torch.randn(5, 8)
    negs = torch.randn(3, 5, 8)
    negs[1, 2] = pos[2]  # a distractor identical to the positive
    logits = contrastive_logits(pred, pos, negs, temperature=0.1)
    assert logits.shape == (4, 5) and logits.dtype == torch.float32
    assert torch.allclose(logits[0], F.cosine_similarity(pred, pos, dim=-1) / 0.1, atol=1e-5)
    assert logits[2, 2] == float("-inf")
    assert torch.isfinite(logits).sum() == 19


def test_info_nce_sum_and_accuracy():
    logits = torch.tensor([[5.0, 0.0, 1.0], [1.0, 2.0, 1.0], [0.0, 0.0, 1.0]])  # (1+K=3, N=3)
    loss, correct = info_nce(logits)
    expected = F.cross_entropy(logits.t(), torch.zeros(3, dtype=torch.long), reduction="sum")
    assert torch.allclose(loss, expected)
    assert int(correct) == 1  # only the first column ranks the positive strictly first
    tie = torch.zeros(3, 2)
    assert int(info_nce(tie)[1]) == 0  # all-equal logits do not count as correct


def test_wav2vec2_loss_per_masked_frame_is_independent_of_batch_size():
    torch.manual_seed(0)
    logits = torch.randn(11, 6)
    conv = torch.randn(2, 4, 9)
    ppl = torch.tensor(20.0)
    one = wav2vec2_loss(logits, ppl, 32, conv)
    two = wav2vec2_loss(torch.cat([logits, logits], 1), ppl, 32, torch.cat([conv, conv]))
    assert two.num_masked == 2 * one.num_masked
    assert torch.allclose(two.total, 2 * one.total)
    assert torch.allclose(two.loss, one.loss)  # the optimised value has no batch-size constant
    expected = one.contrastive + 0.1 * (32 - 20) / 32 * 6 + 10 * conv.pow(2).mean() * 6
    assert torch.allclose(one.total, expected)
    assert one.accuracy.item() == pytest.approx(int(one.correct) / 6)


def test_wav2vec2_loss_without_penalty_is_hugging_faces():
    logits = torch.randn(4, 7)
    out = wav2vec2_loss(logits, torch.tensor(3.0), 8, None, diversity_weight=0.1, feature_penalty_weight=0.0)
    assert torch.allclose(out.total, out.contrastive + 0.1 * (8 - 3) / 8 * 7)


def test_nemo_variant_sums_adds_the_codebook_term_and_scales_by_multiplier_over_batch():
    logits = torch.randn(5, 12)
    ce, _ = info_nce(logits)
    ppl_loss = torch.tensor(0.25)
    value = nemo_contrastive_loss(logits, batch_size=3, prob_ppl_loss=ppl_loss, prob_ppl_weight=0.1, multiplier=16.0)
    assert torch.allclose(value, (ce + 0.1 * 0.25 * 12) * 16 / 3)
    assert torch.allclose(nemo_contrastive_loss(logits, 3, None), ce * 16 / 3)
