"""RNN-T losses against a float64 brute-force dynamic program written here, plus edge cases."""

import json
import math

import numpy as np
import pytest
import torch

from myna.losses import (
    do_rnnt_pruning,
    get_rnnt_prune_ranges,
    pruned_transducer_loss,
    rnnt_loss,
    rnnt_loss_pruned,
    rnnt_loss_simple,
    rnnt_loss_smoothed,
    transducer_loss,
)

TYPES = ["regular", "modified", "constrained"]
BLANK = 0


# --------------------------------------------------------------------------- reference


def _lse(terms):
    terms = [x for x in terms if not (isinstance(x, float) and x == -math.inf)]
    if not terms:
        return -math.inf
    return torch.logsumexp(torch.stack(terms), dim=0)


def brute_force_utt(lp, y, bound, rnnt_type, delay_penalty=0.0, band=None):
    """-log P(y) for one utterance by a plain double loop over lattice points (s, t).

    lp: (T, S+1, C) float64 normalised log-probs; y: list of S symbols; bound: (s0, t0, s1, t1).
    band: optional (T, S+1) bool, arcs leaving (s, t) exist only where band[t, s].
    """
    s0, t0, s1, t1 = bound
    p = {}
    neg = -math.inf

    def arc_ok(t, s):
        return band is None or bool(band[t, s])

    for t in range(t0, t1 + 1):
        for s in range(s0, s1 + 1):
            if (s, t) == (s0, t0):
                p[s, t] = torch.zeros((), dtype=torch.float64)
                continue
            terms = []
            if t > t0 and arc_ok(t - 1, s):
                terms.append(p[s, t - 1] + lp[t - 1, s, BLANK] if not _is_neg(p[s, t - 1]) else neg)
            if s > s0:
                ft = t if rnnt_type == "regular" else t - 1  # frame of the symbol arc
                src = (s - 1, t) if rnnt_type == "regular" else (s - 1, t - 1)
                if t0 <= ft < t1 and src in p and not _is_neg(p[src]) and arc_ok(ft, s - 1):
                    w = lp[ft, s - 1, y[s - 1]] + delay_penalty * ((t1 - 1) / 2 - ft)
                    if rnnt_type == "constrained":
                        w = w + (lp[ft, s, BLANK] if arc_ok(ft, s) else neg)
                    terms.append(p[src] + w if not _is_neg(w) else neg)
            p[s, t] = _lse(terms)
    out = p[s1, t1]
    return -out if not _is_neg(out) else torch.tensor(math.inf, dtype=torch.float64)


def _is_neg(x):
    return (isinstance(x, float) and x == -math.inf) or (torch.is_tensor(x) and bool(torch.isneginf(x)))


def brute_force(lp, symbols, boundary, rnnt_type, delay_penalty=0.0, bands=None):
    """(B,) losses; lp is (B, T, S+1, C) float64 log-probs."""
    return torch.stack(
        [
            brute_force_utt(
                lp[b], symbols[b].tolist(), boundary[b].tolist(), rnnt_type, delay_penalty,
                None if bands is None else bands[b],
            )
            for b in range(lp.shape[0])
        ]
    )


def smoothed_log_probs(lm, am, lm_only_scale, am_only_scale):
    """(B, T, S+1, C) interpolated log-probs of the smoothed simple loss, from definitions."""
    joint = torch.log_softmax(am[:, :, None] + lm[:, None], dim=-1)
    lm_only = torch.log_softmax(lm, dim=-1)[:, None]
    unigram = torch.softmax(lm, dim=-1).mean(dim=(0, 1))
    am_only = torch.log_softmax(am + unigram.log(), dim=-1)[:, :, None]
    w = 1.0 - lm_only_scale - am_only_scale
    return w * joint + lm_only_scale * lm_only + am_only_scale * am_only


def make_case(B=3, T=6, S=4, C=7, seed=0, modified_ok=True):
    g = torch.Generator().manual_seed(seed)
    symbols = torch.randint(1, C, (B, S), generator=g)
    # utterance 0 full size, others shorter; keep S_b <= T_b so "modified" has alignments
    boundary = torch.tensor([[0, 0, S, T], [0, 0, S - 1, T - 1], [0, 0, 2, T - 2]][:B])
    return g, symbols, boundary


def assert_close(actual, expected, rtol, atol=0.0):
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- against brute force


@pytest.mark.parametrize("rnnt_type", TYPES)
def test_rnnt_loss_matches_brute_force_loss_and_gradient(rnnt_type):
    g, symbols, boundary = make_case()
    logits = torch.randn(3, 6, 5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    loss = rnnt_loss(logits, symbols, BLANK, boundary, rnnt_type, reduction="none")
    ref_logits = logits.detach().clone().requires_grad_()
    ref = brute_force(torch.log_softmax(ref_logits, -1), symbols, boundary, rnnt_type)
    assert_close(loss, ref, rtol=1e-6)
    loss.sum().backward()
    ref.sum().backward()
    assert_close(logits.grad, ref_logits.grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("rnnt_type", TYPES)
def test_rnnt_loss_simple_matches_brute_force_loss_and_gradient(rnnt_type):
    g, symbols, boundary = make_case(seed=1)
    lm = torch.randn(3, 5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    am = torch.randn(3, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    loss = rnnt_loss_simple(lm, am, symbols, BLANK, boundary, rnnt_type, reduction="none")
    lm2, am2 = lm.detach().clone().requires_grad_(), am.detach().clone().requires_grad_()
    ref = brute_force(torch.log_softmax(am2[:, :, None] + lm2[:, None], -1), symbols, boundary, rnnt_type)
    assert_close(loss, ref, rtol=1e-6)
    loss.sum().backward()
    ref.sum().backward()
    assert_close(lm.grad, lm2.grad, rtol=1e-5, atol=1e-9)
    assert_close(am.grad, am2.grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("rnnt_type", TYPES)
@pytest.mark.parametrize("scales", [(0.25, 0.0), (0.1, 0.1), (0.0, 0.3)])
def test_rnnt_loss_smoothed_matches_brute_force_loss_and_gradient(rnnt_type, scales):
    g, symbols, boundary = make_case(seed=2)
    lm = torch.randn(3, 5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    am = torch.randn(3, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    loss = rnnt_loss_smoothed(lm, am, symbols, BLANK, *scales, boundary, rnnt_type, reduction="none")
    lm2, am2 = lm.detach().clone().requires_grad_(), am.detach().clone().requires_grad_()
    ref = brute_force(smoothed_log_probs(lm2, am2, *scales), symbols, boundary, rnnt_type)
    assert_close(loss, ref, rtol=1e-6)
    loss.sum().backward()
    ref.sum().backward()
    assert_close(lm.grad, lm2.grad, rtol=1e-5, atol=1e-9)
    assert_close(am.grad, am2.grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("rnnt_type", TYPES)
def test_rnnt_loss_pruned_matches_banded_brute_force(rnnt_type):
    g, symbols, boundary = make_case(seed=3)
    B, T, S, C, R = 3, 6, 4, 7, 3
    lm = torch.randn(B, S + 1, C, generator=g, dtype=torch.float64)
    am = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    _, (px_grad, py_grad) = rnnt_loss_simple(lm, am, symbols, BLANK, boundary, rnnt_type, return_grad=True)
    ranges = get_rnnt_prune_ranges(px_grad, py_grad, boundary, R)
    am_p, lm_p = do_rnnt_pruning(am, lm, ranges)
    logits = (am_p + lm_p).requires_grad_()
    loss = rnnt_loss_pruned(logits, symbols, ranges, BLANK, boundary, rnnt_type, reduction="none")
    # reference: the full lattice with arcs only inside the band
    ref_logits = logits.detach().clone().requires_grad_()
    lp_band = torch.log_softmax(ref_logits, -1)
    lp = torch.zeros(B, T, S + 1, C, dtype=torch.float64)
    lp = lp.scatter(2, ranges[..., None].expand(B, T, R, C), lp_band)
    bands = torch.zeros(B, T, S + 1, dtype=torch.bool).scatter(2, ranges, True)
    ref = brute_force(lp, symbols, boundary, rnnt_type, bands=bands)
    assert_close(loss, ref, rtol=1e-6)
    loss.sum().backward()
    ref.sum().backward()
    assert_close(logits.grad, ref_logits.grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("rnnt_type", TYPES)
def test_delay_penalty_matches_brute_force(rnnt_type):
    g, symbols, boundary = make_case(seed=4)
    logits = torch.randn(3, 6, 5, 7, generator=g, dtype=torch.float64)
    loss = rnnt_loss(logits, symbols, BLANK, boundary, rnnt_type, delay_penalty=0.3, reduction="none")
    ref = brute_force(torch.log_softmax(logits, -1), symbols, boundary, rnnt_type, delay_penalty=0.3)
    assert_close(loss, ref, rtol=1e-6)


@pytest.mark.parametrize("rnnt_type", TYPES)
def test_boundary_with_nonzero_begin_matches_brute_force(rnnt_type):
    g = torch.Generator().manual_seed(5)
    symbols = torch.randint(1, 7, (2, 4), generator=g)
    boundary = torch.tensor([[1, 2, 4, 6], [2, 1, 3, 4]])
    logits = torch.randn(2, 6, 5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    loss = rnnt_loss(logits, symbols, BLANK, boundary, rnnt_type, reduction="none")
    ref_logits = logits.detach().clone().requires_grad_()
    ref = brute_force(torch.log_softmax(ref_logits, -1), symbols, boundary, rnnt_type)
    assert_close(loss, ref, rtol=1e-6)
    loss.sum().backward()
    ref.sum().backward()
    assert_close(logits.grad, ref_logits.grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("rnnt_type", TYPES)
def test_return_grad_is_arc_occupancy(rnnt_type):
    # occupancies are d(log-likelihood)/d(px, py): every path leaves each of its frames by
    # exactly one blank in the regular topology, so py_grad sums to 1 per valid frame there
    g, symbols, boundary = make_case(seed=6)
    lm = torch.randn(3, 5, 7, generator=g, dtype=torch.float64)
    am = torch.randn(3, 6, 7, generator=g, dtype=torch.float64)
    _, (px_grad, py_grad) = rnnt_loss_simple(lm, am, symbols, BLANK, boundary, rnnt_type, return_grad=True)
    assert px_grad.shape == (3, 4, 7 if rnnt_type == "regular" else 6)
    assert py_grad.shape == (3, 5, 6)
    assert bool((px_grad >= 0).all()) and bool((py_grad >= 0).all())
    # frames are left by a blank (regular) or by any arc (modified/constrained) exactly once
    leave = py_grad.sum(1) if rnnt_type == "regular" else py_grad.sum(1) + px_grad.sum(1)
    for b, (_, _, _, t_end) in enumerate(boundary.tolist()):
        assert_close(leave[b, :t_end], torch.ones(t_end, dtype=torch.float64), rtol=1e-9, atol=1e-9)
        assert float(py_grad[b, :, t_end:].abs().sum()) == 0.0


# --------------------------------------------------------------------------- gradcheck


def test_gradcheck_full_simple_smoothed_and_pruned_on_tiny_shapes():
    g = torch.Generator().manual_seed(7)
    symbols = torch.tensor([[1, 2], [3, 0]])
    boundary = torch.tensor([[0, 0, 2, 3], [0, 0, 1, 2]])
    logits = torch.randn(2, 3, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    lm = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    am = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    for rnnt_type in TYPES:
        kw = dict(boundary=boundary, rnnt_type=rnnt_type, reduction="none")
        assert torch.autograd.gradcheck(lambda x: rnnt_loss(x, symbols, BLANK, **kw), (logits,))
        assert torch.autograd.gradcheck(lambda a, b: rnnt_loss_simple(a, b, symbols, BLANK, **kw), (lm, am))
        assert torch.autograd.gradcheck(
            lambda a, b: rnnt_loss_smoothed(a, b, symbols, BLANK, 0.2, 0.1, **kw), (lm, am)
        )
        ranges = torch.tensor([[[0, 1], [0, 1], [1, 2]], [[0, 1], [0, 1], [1, 2]]])
        pl = torch.randn(2, 3, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x: rnnt_loss_pruned(x, symbols, ranges, BLANK, **kw), (pl,))


# --------------------------------------------------------------------------- pruning


@pytest.mark.parametrize("rnnt_type", TYPES)
def test_pruned_with_s_range_above_s_equals_full_loss(rnnt_type):
    g, symbols, boundary = make_case(seed=8)
    B, T, S, C = 3, 6, 4, 7
    lm = torch.randn(B, S + 1, C, generator=g, dtype=torch.float64)
    am = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    _, (px_grad, py_grad) = rnnt_loss_simple(lm, am, symbols, BLANK, boundary, rnnt_type, return_grad=True)
    ranges = get_rnnt_prune_ranges(px_grad, py_grad, boundary, S + 3)
    assert ranges.shape == (B, T, S + 1)
    am_p, lm_p = do_rnnt_pruning(am, lm, ranges)
    pruned = rnnt_loss_pruned(am_p + lm_p, symbols, ranges, BLANK, boundary, rnnt_type, reduction="none")
    full = rnnt_loss(am[:, :, None] + lm[:, None], symbols, BLANK, boundary, rnnt_type, reduction="none")
    assert_close(pruned, full, rtol=1e-10)


@pytest.mark.parametrize("rnnt_type", TYPES)
@pytest.mark.parametrize("s_range", [1, 2, 3, 5])
def test_prune_ranges_are_monotone_and_inside_the_boundary(rnnt_type, s_range):
    g = torch.Generator().manual_seed(9)
    B, T, S, C = 4, 30, 12, 9
    symbols = torch.randint(1, C, (B, S), generator=g)
    boundary = torch.tensor([[0, 0, 12, 30], [0, 0, 7, 25], [0, 0, 1, 9], [0, 0, 0, 14]])
    lm = torch.randn(B, S + 1, C, generator=g)
    am = torch.randn(B, T, C, generator=g)
    _, (px_grad, py_grad) = rnnt_loss_simple(lm, am, symbols, BLANK, boundary, rnnt_type, return_grad=True)
    if rnnt_type == "regular" and s_range < 2:
        # a regular band of width 1 holds no path: widened to 2 with a warning, as k2 does
        with pytest.warns(UserWarning, match="using s_range=2"):
            ranges = get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
        s_range = 2
    else:
        ranges = get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
    start = ranges[:, :, 0]
    step = (s_range - 1) if rnnt_type == "regular" else 1
    assert ranges.dtype == torch.int64 and ranges.shape == (B, T, s_range)
    assert bool((ranges == start[..., None] + torch.arange(s_range)).all())
    assert bool((start[:, 0] == 0).all())
    diff = start[:, 1:] - start[:, :-1]
    assert bool((diff >= 0).all()) and bool((diff <= step).all())
    assert bool((ranges >= 0).all()) and bool((ranges <= S).all())
    for b, (_, _, s_end, t_end) in enumerate(boundary.tolist()):
        last = max(s_end - s_range + 1, 0)
        assert bool((start[b] <= last).all())  # never beyond the utterance's last symbol
        assert bool((start[b, t_end - 1 :] == last).all())  # last frame reaches end_symbol


def test_pruned_loss_is_finite_and_close_to_full_for_a_peaked_model():
    # with a sharp alignment the band keeps nearly all of the mass
    g = torch.Generator().manual_seed(10)
    B, T, S, C = 2, 40, 10, 12
    symbols = torch.randint(1, C, (B, S), generator=g)
    boundary = torch.tensor([[0, 0, 10, 40], [0, 0, 8, 33]])
    am = torch.randn(B, T, C, generator=g) * 0.3
    lm = torch.randn(B, S + 1, C, generator=g) * 0.3
    simple, pruned = pruned_transducer_loss(
        am, lm, lambda a, b: a + b, symbols, boundary[:, 3], boundary[:, 2], BLANK, s_range=4,
        lm_only_scale=0.0, am_only_scale=0.0, reduction="none",
    )
    full = rnnt_loss(am[:, :, None] + lm[:, None], symbols, BLANK, boundary, reduction="none")
    assert_close(simple, full, rtol=1e-5)
    assert bool(torch.isfinite(pruned).all()) and bool((pruned >= full - 1e-4).all())


def test_pruned_transducer_loss_runs_the_joiner_on_pruned_joiner_inputs():
    g = torch.Generator().manual_seed(11)
    B, T, U, C, J = 2, 12, 4, 6, 5
    targets = torch.randint(0, C - 1, (B, U), generator=g)
    t_len, u_len = torch.tensor([12, 9]), torch.tensor([4, 2])
    enc = torch.randn(B, T, J, generator=g, requires_grad=True)
    pred = torch.randn(B, U + 1, J, generator=g, requires_grad=True)
    proj = torch.nn.Linear(J, C).double().float()
    seen = {}

    def joiner(a, b):
        seen["shapes"] = (tuple(a.shape), tuple(b.shape))
        return proj(torch.tanh(a + b))

    simple, pruned = pruned_transducer_loss(
        proj(enc), proj(pred), joiner, targets, t_len, u_len, C - 1, s_range=3,
        joiner_am=enc, joiner_lm=pred,
    )
    assert seen["shapes"] == ((B, T, 3, J), (B, T, 3, J))
    (simple * 0.5 + pruned).backward()
    assert enc.grad is not None and pred.grad is not None and bool(torch.isfinite(enc.grad).all())
    # s_range >= U + 1: the pruned loss is the full loss with the same joiner
    _, pruned_all = pruned_transducer_loss(
        proj(enc), proj(pred), joiner, targets, t_len, u_len, C - 1, s_range=U + 1,
        joiner_am=enc, joiner_lm=pred,
    )
    full = transducer_loss(joiner(enc[:, :, None], pred[:, None]), targets, t_len, u_len, C - 1)
    assert_close(pruned_all, full, rtol=1e-5)


# --------------------------------------------------------------------------- padding, reductions, dtypes


@pytest.mark.parametrize("rnnt_type", TYPES)
def test_padding_gives_the_same_per_utterance_losses(rnnt_type):
    g = torch.Generator().manual_seed(12)
    C = 8
    lens = [(9, 5), (6, 2), (4, 0)]
    T, U = 9, 5
    logits = torch.randn(3, T, U + 1, C, generator=g)
    targets = torch.randint(1, C, (3, U), generator=g)
    t_len = torch.tensor([t for t, _ in lens])
    u_len = torch.tensor([u for _, u in lens])
    padded = transducer_loss(logits, targets, t_len, u_len, BLANK, "none", rnnt_type)
    for b, (t, u) in enumerate(lens):
        alone = transducer_loss(
            logits[b : b + 1, :t, : u + 1], targets[b : b + 1, :u], t_len[b : b + 1], u_len[b : b + 1],
            BLANK, "none", rnnt_type,
        )
        assert_close(padded[b : b + 1], alone, rtol=1e-6)
    # padded symbols may hold any value, even out of range
    junk = targets.clone()
    junk[1, 2:] = -100
    assert_close(transducer_loss(logits, junk, t_len, u_len, BLANK, "none", rnnt_type), padded, rtol=1e-7)


def test_reductions_follow_k2_mean_is_sum_over_batch():
    g, symbols, boundary = make_case(seed=13)
    logits = torch.randn(3, 6, 5, 7, generator=g)
    per = rnnt_loss(logits, symbols, BLANK, boundary, reduction="none")
    assert per.shape == (3,)
    assert_close(rnnt_loss(logits, symbols, BLANK, boundary, reduction="sum"), per.sum(), rtol=1e-6)
    assert_close(rnnt_loss(logits, symbols, BLANK, boundary), per.sum() / 3, rtol=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        rnnt_loss(logits, symbols, BLANK, boundary, reduction="mean_batch")
    with pytest.raises(ValueError, match="rnnt_type"):
        rnnt_loss(logits, symbols, BLANK, boundary, rnnt_type="fast")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(dtype):
    g, symbols, boundary = make_case(seed=14)
    logits = torch.randn(3, 6, 5, 7, generator=g).to(dtype).requires_grad_()
    loss = rnnt_loss(logits, symbols, BLANK, boundary, reduction="none")
    ref_logits = logits.detach().float().requires_grad_()
    ref = rnnt_loss(ref_logits, symbols, BLANK, boundary, reduction="none")
    assert loss.dtype == torch.float32
    assert_close(loss, ref, rtol=1e-6)
    loss.sum().backward()
    ref.sum().backward()
    assert logits.grad.dtype == dtype
    assert_close(logits.grad, ref_logits.grad, rtol=1e-2, atol=1e-2)
    lm = torch.randn(3, 5, 7, generator=g).to(dtype)
    am = torch.randn(3, 6, 7, generator=g).to(dtype)
    simple = rnnt_loss_simple(lm, am, symbols, BLANK, boundary, reduction="none")
    assert simple.dtype == torch.float32
    assert_close(simple, rnnt_loss_simple(lm.float(), am.float(), symbols, BLANK, boundary, reduction="none"),
                 rtol=1e-6)


def test_inplace_grad_writes_the_same_gradient_into_the_logits():
    g, symbols, boundary = make_case(seed=20)
    am = torch.randn(3, 6, 7, generator=g, requires_grad=True)
    lm = torch.randn(3, 5, 7, generator=g, requires_grad=True)
    logits = am[:, :, None] + lm[:, None]
    rnnt_loss(logits.detach(), symbols, BLANK, boundary)  # no grad needed: nothing is written
    loss = rnnt_loss(logits, symbols, BLANK, boundary, inplace_grad=True)
    loss.backward()
    grads = am.grad.clone(), lm.grad.clone()
    am.grad = lm.grad = None
    leaf = (am[:, :, None] + lm[:, None]).detach().requires_grad_()
    ref = rnnt_loss(leaf, symbols, BLANK, boundary)
    ref.backward()
    assert_close(logits.detach(), leaf.grad, rtol=1e-6, atol=1e-7)  # logits now hold the gradient
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(grads[0], leaf.grad.sum(2))
    torch.testing.assert_close(grads[1], leaf.grad.sum(1))


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("rnnt_type", TYPES)
def test_empty_targets_give_the_all_blank_path(rnnt_type):
    g = torch.Generator().manual_seed(15)
    logits = torch.randn(2, 5, 1, 6, generator=g, dtype=torch.float64, requires_grad=True)
    symbols = torch.zeros(2, 0, dtype=torch.int64)
    loss = rnnt_loss(logits, symbols, BLANK, rnnt_type=rnnt_type, reduction="none")
    expected = -torch.log_softmax(logits, -1)[:, :, 0, BLANK].sum(1)
    assert_close(loss, expected, rtol=1e-10)
    loss.sum().backward()
    assert bool(torch.isfinite(logits.grad).all())


@pytest.mark.parametrize("rnnt_type", TYPES)
def test_single_frame(rnnt_type):
    g = torch.Generator().manual_seed(16)
    logits = torch.randn(2, 1, 3, 5, generator=g, dtype=torch.float64)
    symbols = torch.tensor([[2, 3], [1, 4]])
    boundary = torch.tensor([[0, 0, 2, 1], [0, 0, 1, 1]])
    loss = rnnt_loss(logits, symbols, BLANK, boundary, rnnt_type, reduction="none")
    ref = brute_force(torch.log_softmax(logits, -1), symbols, boundary, rnnt_type)
    assert_close(loss, ref, rtol=1e-10)
    if rnnt_type == "regular":
        assert bool(torch.isfinite(loss).all())
    else:  # two symbols cannot fit in one frame
        assert math.isinf(loss[0].item()) and math.isfinite(loss[1].item())


@pytest.mark.parametrize("rnnt_type", ["modified", "constrained"])
def test_more_symbols_than_frames_is_an_infinite_loss_with_zero_gradient(rnnt_type):
    g = torch.Generator().manual_seed(17)
    logits = torch.randn(2, 3, 5, 6, generator=g, requires_grad=True)
    symbols = torch.randint(1, 6, (2, 4), generator=g)
    boundary = torch.tensor([[0, 0, 4, 3], [0, 0, 2, 3]])
    loss = rnnt_loss(logits, symbols, BLANK, boundary, rnnt_type, reduction="none")
    assert loss[0].item() == math.inf and math.isfinite(loss[1].item())
    loss[1].backward()
    assert bool(torch.isfinite(logits.grad).all())
    logits.grad = None
    loss = rnnt_loss(logits, symbols, BLANK, boundary, rnnt_type, reduction="none")
    loss.sum().backward()
    assert float(logits.grad[0].abs().sum()) == 0.0 and bool(torch.isfinite(logits.grad).all())


@pytest.mark.parametrize("bad", [float("nan"), float("-inf"), float("inf")])
def test_non_finite_inputs_raise_a_clear_error(bad):
    g, symbols, boundary = make_case(seed=18)
    logits = torch.randn(3, 6, 5, 7, generator=g)
    logits[1, 2, 3, 4] = bad
    with pytest.raises(ValueError, match=r"logits must be finite.*b=1, t=2, u=3, c=4"):
        rnnt_loss(logits, symbols, BLANK, boundary)
    am = torch.randn(3, 6, 7, generator=g)
    lm = torch.randn(3, 5, 7, generator=g)
    am[0, 1, 2] = bad
    with pytest.raises(ValueError, match="am must be finite"):
        rnnt_loss_simple(lm, am, symbols, BLANK, boundary)
    with pytest.raises(ValueError, match="am must be finite"):
        rnnt_loss_smoothed(lm, am, symbols, BLANK, boundary=boundary)


def test_bad_boundary_and_symbols_raise_with_the_values():
    g, symbols, _ = make_case(seed=19)
    logits = torch.randn(3, 6, 5, 7, generator=g)
    with pytest.raises(ValueError, match=r"boundary row 1 = \[0, 0, 9, 6\]"):
        rnnt_loss(logits, symbols, BLANK, torch.tensor([[0, 0, 4, 6], [0, 0, 9, 6], [0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="symbols must lie in"):
        rnnt_loss(logits, symbols + 7, BLANK)
    with pytest.raises(ValueError, match="termination_symbol"):
        rnnt_loss(logits, symbols, 7)


# --------------------------------------------------------------------------- NeMo parity


@pytest.mark.parity
def test_transducer_loss_matches_nemo_fixture(nemo_fixtures, transducer_model):
    ref = np.load(nemo_fixtures / f"{transducer_model}_reference.npz")
    blank = json.loads((nemo_fixtures / f"{transducer_model}_reference.json").read_text())["blank_id"]
    log_probs = torch.from_numpy(ref["batch_joint_output"])  # (B, T', U+1, V+1) log-probs
    targets = torch.from_numpy(ref["targets"])
    target_len = torch.from_numpy(ref["target_len"])
    enc_len = torch.from_numpy(ref["batch_encoded_len"])
    per_utt = transducer_loss(log_probs, targets, enc_len, target_len, blank=blank, reduction="none")
    mean = transducer_loss(log_probs, targets, enc_len, target_len, blank=blank)
    assert_close(per_utt, torch.from_numpy(ref["batch_rnnt_loss_per_utt"]), rtol=1e-4)
    assert_close(mean, torch.tensor(float(ref["batch_rnnt_loss"])), rtol=1e-4)
    # raw logits (log-probs + per-cell constant) give the same loss
    raw = log_probs + torch.from_numpy(ref["batch_joint_logit_lse"])[..., None]
    assert_close(transducer_loss(raw, targets, enc_len, target_len, blank, "none"), per_utt, rtol=1e-5)
