"""Gumbel product quantizer: argmax in eval, straight-through Gumbel in training, both codebook layouts."""

import math

import pytest
import torch

from myna.nn.quantizer import GumbelVectorQuantizer, perplexity


def _quantizer(**kw):
    torch.manual_seed(0)
    return GumbelVectorQuantizer(**{"dim": 12, "num_vars": 5, "groups": 3, "vq_dim": 6, **kw})


def test_eval_picks_argmax_codevectors_and_ids():
    q = _quantizer().eval()
    x = torch.randn(2, 7, 12)
    out = q(x)
    logits = q.weight_proj(x).view(2, 7, 3, 5)
    assert torch.equal(out.ids, logits.argmax(-1))
    table = q.vars.view(3, 5, 2)  # one codebook per group
    expected = torch.cat([table[g][out.ids[..., g]] for g in range(3)], -1)
    assert torch.equal(out.quantized, expected)
    assert torch.equal(out.target_ids, out.ids[..., 0] * 25 + out.ids[..., 1] * 5 + out.ids[..., 2])


def test_combined_groups_share_one_codebook():
    q = _quantizer(combine_groups=True).eval()
    assert q.vars.shape == (1, 5, 2)
    out = q(torch.randn(1, 4, 12))
    table = q.vars[0]
    expected = torch.cat([table[out.ids[..., g]] for g in range(3)], -1)
    assert torch.equal(out.quantized, expected)


def test_channels_first_input():
    q = _quantizer(time_first=False).eval()
    x = torch.randn(2, 12, 7)
    out = q(x)
    assert out.quantized.shape == (2, 6, 7)
    q2 = _quantizer().eval()
    q2.load_state_dict(q.state_dict())
    assert torch.equal(q2(x.transpose(1, 2)).quantized.transpose(1, 2), out.quantized)


def test_training_is_straight_through_and_one_hot():
    q = _quantizer().train()
    out = q(torch.randn(2, 9, 12))
    table = q.vars.view(3, 5, 2)
    # each group's slice is exactly one codevector of its table
    chunks = out.quantized.view(18, 3, 2)
    for g in range(3):
        assert (torch.cdist(chunks[:, g], table[g]).min(-1).values < 1e-6).all()
    out.quantized.sum().backward()
    assert q.weight_proj.weight.grad is not None and q.weight_proj.weight.grad.abs().sum() > 0
    assert q.vars.grad is not None


def test_temperature_schedule():
    q = _quantizer(temp=(2.0, 0.5, 0.999995))
    q.set_num_updates(0)
    assert q.curr_temp == 2.0
    q.set_num_updates(100_000)
    assert q.curr_temp == pytest.approx(2.0 * 0.999995 ** 100_000)
    q.set_num_updates(10_000_000)
    assert q.curr_temp == 0.5


def test_perplexity_bounds_mask_and_eps():
    uniform = torch.full((10, 2, 4), 0.25)
    assert perplexity(uniform).item() == pytest.approx(8.0, rel=1e-5)
    collapsed = torch.zeros(10, 2, 4)
    collapsed[..., 0] = 1
    assert perplexity(collapsed, eps=0).item() == pytest.approx(2.0)
    mixed = torch.cat([collapsed[:5], uniform[:5]])
    mask = torch.tensor([True] * 5 + [False] * 5)
    assert perplexity(mixed, mask, eps=0).item() == pytest.approx(2.0)
    q = _quantizer().eval()
    out = q(torch.randn(3, 4, 12))
    assert out.diversity_loss.item() == pytest.approx((15 - out.prob_perplexity.item()) / 15)
    assert 3 - 1e-5 <= out.code_perplexity.item() <= 15 and math.isfinite(out.prob_perplexity.item())


def test_deep_logit_projection_and_bad_sizes():
    q = _quantizer(weight_proj_depth=2, weight_proj_factor=2).eval()
    assert q(torch.randn(1, 3, 12)).ids.shape == (1, 3, 3)
    assert "weight_proj.0.0.weight" in q.state_dict()
    with pytest.raises(ValueError, match="divisible"):
        GumbelVectorQuantizer(12, 5, 4, 6)
