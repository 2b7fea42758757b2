"""k2's RNN-T API beyond the losses: log-prob builders, HAT, the lattice recursion, pruning rules.

References are written here from the definitions, in float64: a plain double loop over lattice
points for the recursion, log_softmax / logsigmoid of the joiner output for the log-probs.
"""

import math
import warnings

import pytest
import torch

from myna.losses import (
    do_rnnt_pruning,
    fix_for_boundary,
    get_hat_logprobs_pruned,
    get_rnnt_logprobs,
    get_rnnt_logprobs_joint,
    get_rnnt_logprobs_pruned,
    get_rnnt_logprobs_smoothed,
    get_rnnt_prune_ranges,
    get_rnnt_prune_ranges_deprecated,
    joint_mutual_information_recursion,
    mutual_information_recursion,
    rnnt_loss,
    rnnt_loss_pruned,
    rnnt_loss_simple,
)

TYPES = ["regular", "modified", "constrained"]
NEG = float("-inf")


# --------------------------------------------------------------------------- references


def brute_lattice(px, py, boundary=None):
    """(B,) log-sum over paths by a double loop over (s, t); differentiable (float64 tensors)."""
    B, S, T1 = px.shape
    T = py.shape[2]
    modified = T1 == T
    out = []
    for b in range(B):
        s0, t0, s1, t1 = boundary[b].tolist() if boundary is not None else (0, 0, S, T)
        p = {}
        for s in range(s0, s1 + 1):
            for t in range(t0, t1 + 1):
                if (s, t) == (s0, t0):
                    p[s, t] = px.new_zeros(())
                    continue
                terms = []
                if t > t0:
                    terms.append(p[s, t - 1] + py[b, s, t - 1])
                if s > s0 and (not modified or t > t0):
                    src_t = t - 1 if modified else t
                    terms.append(p[s - 1, src_t] + px[b, s - 1, src_t])
                terms = [x for x in terms if not bool(torch.isneginf(x))]  # no NaN gradients
                p[s, t] = torch.logsumexp(torch.stack(terms), 0) if terms else px.new_tensor(NEG)
        out.append(p[s1, t1])
    return torch.stack(out)


def simple_lattice_from_definitions(lm, am, symbols, blank, rnnt_type, boundary=None):
    """(px, py) of the additive joiner straight from log_softmax(am + lm)."""
    lp = torch.log_softmax(am[:, :, None] + lm[:, None], dim=-1)  # (B, T, S+1, C)
    return _lattice_from_log_probs(lp, symbols, blank, rnnt_type, boundary)


def _lattice_from_log_probs(lp, symbols, blank, rnnt_type, boundary=None, band=None):
    """(px, py) from full (B, T, S+1, C) log-probs; arcs leave only cells where band[b, t, s]."""
    B, T, S1, C = lp.shape
    S = S1 - 1
    if band is not None:
        lp = lp.masked_fill(~band[..., None], NEG)
    py = lp[..., blank].transpose(1, 2)  # (B, S+1, T)
    px = torch.gather(lp[:, :, :S], 3, symbols[:, None, :, None].expand(B, T, S, 1))[..., 0].transpose(1, 2)
    if rnnt_type == "regular":
        px = torch.cat((px, px.new_full((B, S, 1), NEG)), dim=2)
        if boundary is not None:
            for b, t_end in enumerate(boundary[:, 3].tolist()):
                px[b, :, t_end] = NEG
    elif rnnt_type == "constrained":
        px = px + py[:, 1:]
    return px, py


def random_boundary(B, S, T, g, modified):
    rows = []
    for _ in range(B):
        s_len = int(torch.randint(0, S + 1, (1,), generator=g))
        t_len = int(torch.randint(s_len if modified else 1, T + 1, (1,), generator=g))
        s0 = int(torch.randint(0, S - s_len + 1, (1,), generator=g))
        t0 = int(torch.randint(0, T - t_len + 1, (1,), generator=g))
        rows.append([s0, t0, s0 + s_len, t0 + t_len])
    return torch.tensor(rows)


def assert_close(actual, expected, rtol, atol=0.0):
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol)


def pruned_case(seed, shape, boundary, rnnt_type, R):
    """Random float64 am, lm, symbols (from 1) and the band of width R the simple loss picks."""
    g = torch.Generator().manual_seed(seed)
    B, T, S, C = shape
    lm = torch.randn(B, S + 1, C, generator=g, dtype=torch.float64)
    am = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    symbols = torch.randint(1, C, (B, S), generator=g)
    _, (px_grad, py_grad) = rnnt_loss_simple(lm, am, symbols, 0, boundary, rnnt_type, return_grad=True)
    ranges = get_rnnt_prune_ranges(px_grad, py_grad, boundary, R)
    am_p, lm_p = do_rnnt_pruning(am, lm, ranges)
    return am, lm, symbols, ranges, am_p + lm_p


# --------------------------------------------------------------------------- the recursion


@pytest.mark.parametrize("modified", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_mutual_information_recursion_matches_brute_force_scores_and_gradients(modified, seed):
    g = torch.Generator().manual_seed(seed)
    B, S, T = 3, 4, 5
    px = torch.randn(B, S, T + (0 if modified else 1), generator=g, dtype=torch.float64)
    py = torch.randn(B, S + 1, T, generator=g, dtype=torch.float64)
    px[0, 1, 2] = NEG  # a removed arc
    boundary = random_boundary(B, S, T, g, modified)
    px.requires_grad_()
    py.requires_grad_()
    scores, (px_occ, py_occ) = mutual_information_recursion(px, py, boundary, return_grad=True)
    px2, py2 = px.detach().clone().requires_grad_(), py.detach().clone().requires_grad_()
    ref = brute_lattice(px2, py2, boundary)
    assert_close(scores, ref, rtol=1e-10)
    m_grad = torch.randn(B, generator=g, dtype=torch.float64)
    scores.backward(m_grad)
    ref.backward(m_grad)
    assert_close(px.grad, px2.grad, rtol=1e-8, atol=1e-12)
    assert_close(py.grad, py2.grad, rtol=1e-8, atol=1e-12)
    # return_grad gives the gradient of scores.sum(): the occupancies
    px3, py3 = px.detach().clone().requires_grad_(), py.detach().clone().requires_grad_()
    brute_lattice(px3, py3, boundary).sum().backward()
    assert_close(px_occ, px3.grad, rtol=1e-8, atol=1e-12)
    assert_close(py_occ, py3.grad, rtol=1e-8, atol=1e-12)


def test_mutual_information_recursion_without_boundary_and_without_a_path():
    g = torch.Generator().manual_seed(2)
    px = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)  # modified: T=4, S=3
    py = torch.randn(2, 4, 4, generator=g, dtype=torch.float64)
    assert_close(mutual_information_recursion(px, py), brute_lattice(px, py), rtol=1e-10)
    px[1] = NEG  # utterance 1 must emit 3 symbols in 4 frames but has no symbol arcs
    px.requires_grad_()
    scores = mutual_information_recursion(px, py)
    assert math.isinf(scores[1].item()) and scores[1].item() < 0
    scores[0].backward()
    assert bool(torch.isfinite(px.grad).all())
    with pytest.raises(ValueError, match="px must be"):
        mutual_information_recursion(px.detach()[:, :, :2], py)


def test_joint_mutual_information_recursion_splits_the_total_and_keeps_the_gradient():
    g = torch.Generator().manual_seed(3)
    B, S, T = 2, 3, 5
    terms_x = [torch.randn(B, S, T + 1, generator=g, dtype=torch.float64) for _ in range(3)]
    terms_y = [torch.randn(B, S + 1, T, generator=g, dtype=torch.float64) for _ in range(3)]
    terms_x[1][:, :, T] = NEG  # -inf in one term must not produce NaN
    for t in terms_x + terms_y:
        t.requires_grad_()
    boundary = torch.tensor([[0, 0, 3, 5], [1, 0, 3, 4]])
    parts = joint_mutual_information_recursion(terms_x, terms_y, boundary)
    assert parts.shape == (3, B)
    px_tot = sum(t.detach() for t in terms_x).requires_grad_()
    py_tot = sum(t.detach() for t in terms_y).requires_grad_()
    total = brute_lattice(px_tot, py_tot, boundary)
    assert_close(parts.sum(0), total, rtol=1e-10)
    # the parts of terms 1 and 2 are occupancy-weighted sums of their own arcs
    _, (px_occ, py_occ) = mutual_information_recursion(px_tot.detach(), py_tot.detach(), boundary, True)
    for n in (1, 2):
        x = terms_x[n].detach().masked_fill(torch.isneginf(terms_x[n].detach()), 0.0)
        expected = (x * px_occ).sum((1, 2)) + (terms_y[n].detach() * py_occ).sum((1, 2))
        assert_close(parts[n], expected, rtol=1e-10)
    parts.sum().backward()
    total.sum().backward()
    for t in terms_x:
        assert_close(t.grad, px_tot.grad, rtol=1e-8, atol=1e-12)
    for t in terms_y:
        assert_close(t.grad, py_tot.grad, rtol=1e-8, atol=1e-12)


# --------------------------------------------------------------------------- log-prob builders


@pytest.mark.parametrize("rnnt_type", TYPES)
def test_get_rnnt_logprobs_match_log_softmax_of_the_joiner(rnnt_type):
    g = torch.Generator().manual_seed(4)
    B, T, S, C = 3, 6, 4, 7
    lm = torch.randn(B, S + 1, C, generator=g, dtype=torch.float64)
    am = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    symbols = torch.randint(0, C, (B, S), generator=g)
    boundary = torch.tensor([[0, 0, 4, 6], [0, 0, 3, 5], [0, 0, 2, 4]])
    ref_px, ref_py = simple_lattice_from_definitions(lm, am, symbols, 2, rnnt_type, boundary)
    px, py = get_rnnt_logprobs(lm, am, symbols, 2, rnnt_type, boundary)
    assert px.shape == ((B, S, T + 1) if rnnt_type == "regular" else (B, S, T)) and py.shape == (B, S + 1, T)
    assert_close(px, ref_px, rtol=1e-10)
    assert_close(py, ref_py, rtol=1e-10)
    # the joint version from the (B, T, S+1, C) sum gives the same, in k2's and fast_rnnt's order
    logits = am[:, :, None] + lm[:, None]
    for got in (
        get_rnnt_logprobs_joint(logits, symbols, 2, rnnt_type, boundary),
        get_rnnt_logprobs_joint(logits, symbols, 2, boundary, rnnt_type),
        get_rnnt_logprobs_joint(logits, symbols, 2, boundary=boundary, rnnt_type=rnnt_type),
    ):
        assert_close(got[0], ref_px, rtol=1e-10)
        assert_close(got[1], ref_py, rtol=1e-10)
    # a loss is the negated recursion over these log-probs
    loss = rnnt_loss_simple(lm, am, symbols, 2, boundary, rnnt_type, reduction="none")
    assert_close(loss, -brute_lattice(ref_px, ref_py, boundary), rtol=1e-10)


@pytest.mark.parametrize("rnnt_type", ["regular", "constrained"])
def test_get_rnnt_logprobs_smoothed_interpolates_lm_only_and_am_only_log_probs(rnnt_type):
    g = torch.Generator().manual_seed(5)
    B, T, S, C = 2, 5, 3, 6
    lm = torch.randn(B, S + 1, C, generator=g, dtype=torch.float64)
    am = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    symbols = torch.randint(1, C, (B, S), generator=g)
    lm_scale, am_scale = 0.2, 0.15
    joint = torch.log_softmax(am[:, :, None] + lm[:, None], dim=-1)
    lm_only = torch.log_softmax(lm, dim=-1)[:, None].expand_as(joint)
    unigram = torch.softmax(lm, dim=-1).mean(dim=(0, 1))
    am_only = torch.log_softmax(am + unigram.log(), dim=-1)[:, :, None].expand_as(joint)
    lp = (1 - lm_scale - am_scale) * joint + lm_scale * lm_only + am_scale * am_only
    ref_px, ref_py = _lattice_from_log_probs(lp, symbols, 0, rnnt_type)
    px, py = get_rnnt_logprobs_smoothed(lm, am, symbols, 0, lm_scale, am_scale, rnnt_type=rnnt_type)
    assert_close(px, ref_px, rtol=1e-10)
    assert_close(py, ref_py, rtol=1e-10)


@pytest.mark.parametrize("rnnt_type", TYPES)
def test_get_rnnt_logprobs_pruned_equals_the_full_log_probs_inside_the_band(rnnt_type):
    B, T, S, C = 2, 7, 5, 6
    boundary = torch.tensor([[0, 0, 5, 7], [0, 0, 4, 6]])
    am, lm, symbols, ranges, logits = pruned_case(6, (B, T, S, C), boundary, rnnt_type, 3)
    px, py = get_rnnt_logprobs_pruned(logits, symbols, ranges, 0, boundary, rnnt_type)
    band = torch.zeros(B, T, S + 1, dtype=torch.bool).scatter(2, ranges, True)
    lp = torch.log_softmax(am[:, :, None] + lm[:, None], dim=-1)
    ref_px, ref_py = _lattice_from_log_probs(lp, symbols, 0, rnnt_type, boundary, band)
    assert_close(px, ref_px, rtol=1e-10)
    assert_close(py, ref_py, rtol=1e-10)


# --------------------------------------------------------------------------- HAT


def hat_log_probs(logits):
    """(..., C) HAT log-probs from the definition: Bernoulli blank (class 0), softmax over the rest."""
    blank = torch.nn.functional.logsigmoid(logits[..., :1])
    not_blank = torch.log1p(-torch.sigmoid(logits[..., :1]))
    return torch.cat((blank, not_blank + torch.log_softmax(logits[..., 1:], dim=-1)), dim=-1)


@pytest.mark.parametrize("rnnt_type", TYPES)
def test_hat_pruned_loss_matches_the_definition_and_its_gradient(rnnt_type):
    B, T, S, C, R = 2, 6, 4, 5, 3
    boundary = torch.tensor([[0, 0, 4, 6], [0, 0, 3, 5]])
    _, _, symbols, ranges, logits = pruned_case(7, (B, T, S, C), boundary, rnnt_type, R)
    logits = torch.tanh(logits).requires_grad_()
    loss = rnnt_loss_pruned(logits, symbols, ranges, 0, boundary, rnnt_type, reduction="none", use_hat_loss=True)
    ref_logits = logits.detach().clone().requires_grad_()
    lp_band = hat_log_probs(ref_logits)  # (B, T, R, C)
    lp = torch.zeros(B, T, S + 1, C, dtype=torch.float64).scatter(2, ranges[..., None].expand(B, T, R, C), lp_band)
    band = torch.zeros(B, T, S + 1, dtype=torch.bool).scatter(2, ranges, True)
    ref_px, ref_py = _lattice_from_log_probs(lp, symbols, 0, rnnt_type, boundary, band)
    ref = -brute_lattice(ref_px, ref_py, boundary)
    assert_close(loss, ref, rtol=1e-10)
    loss.sum().backward()
    ref.sum().backward()
    assert_close(logits.grad, ref_logits.grad, rtol=1e-7, atol=1e-12)
    px, py = get_hat_logprobs_pruned(logits.detach(), symbols, ranges, 0, boundary, rnnt_type)
    assert_close(px, ref_px.detach(), rtol=1e-10)
    assert_close(py, ref_py.detach(), rtol=1e-10)


def test_hat_needs_blank_zero():
    logits = torch.randn(1, 3, 2, 4)
    symbols = torch.tensor([[1, 2]])
    ranges = torch.tensor([[[0, 1], [0, 1], [1, 2]]])
    with pytest.raises(ValueError, match="HAT needs the blank"):
        rnnt_loss_pruned(logits, symbols, ranges, 3, use_hat_loss=True)


# --------------------------------------------------------------------------- pruning rules


def test_prune_ranges_widen_a_regular_band_too_narrow_for_a_path_with_a_warning():
    g = torch.Generator().manual_seed(8)
    B, T, S, C = 2, 5, 8, 6
    lm = torch.randn(B, S + 1, C, generator=g, dtype=torch.float64)
    am = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    symbols = torch.randint(1, C, (B, S), generator=g)
    boundary = torch.tensor([[0, 0, 8, 3], [0, 0, 4, 5]])  # utterance 0: 8 symbols in 3 frames
    _, (px_grad, py_grad) = rnnt_loss_simple(lm, am, symbols, 0, boundary, return_grad=True)
    with pytest.warns(UserWarning, match=r"utterance 0 \(S=8 symbols in T=3 frames.* using s_range=4"):
        ranges = get_rnnt_prune_ranges(px_grad, py_grad, boundary, 2)
    assert ranges.shape == (B, T, 4)  # (8 - 1) // 3 + 2
    am_p, lm_p = do_rnnt_pruning(am, lm, ranges)
    pruned = rnnt_loss_pruned(am_p + lm_p, symbols, ranges, 0, boundary, reduction="none")
    assert bool(torch.isfinite(pruned).all())
    # wide enough, or modified RNN-T (one symbol per frame whatever the width): no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_rnnt_prune_ranges(px_grad, py_grad, boundary, 4).shape == (B, T, 4)
        mod_boundary = torch.tensor([[0, 0, 3, 5], [0, 0, 4, 5]])
        _, (mx, my) = rnnt_loss_simple(lm, am, symbols, 0, mod_boundary, "modified", return_grad=True)
        assert get_rnnt_prune_ranges(mx, my, mod_boundary, 1).shape == (B, T, 1)
    with pytest.raises(ValueError, match="s_range must be >= 1"):
        get_rnnt_prune_ranges(mx, my, mod_boundary, 0)


def _reference_ranges(starts, boundary, s_range, step):
    """Loops: last window from the last frame on, monotone (suffix min), start 0, steps <= step."""
    B, T = starts.shape
    out = starts.clone()
    for b in range(B):
        s_end, t_end = int(boundary[b, 2]), int(boundary[b, 3])
        for t in range(T):
            if t >= t_end - 1:
                out[b, t] = max(s_end - s_range + 1, 0)
        for t in range(T - 2, -1, -1):
            out[b, t] = min(out[b, t], out[b, t + 1])
        # largest starts with s[0] = 0 and s[t+1] - s[t] <= step that stay below the monotone bound
        for t in range(T):
            out[b, t] = min(out[b, t], t * step)
        for t in range(T - 2, -1, -1):
            out[b, t] = max(out[b, t], out[b, t + 1] - step)
    return out[..., None] + torch.arange(s_range)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_deprecated_prune_ranges_take_the_window_with_most_total_occupancy(rnnt_type):
    g = torch.Generator().manual_seed(9)
    B, T, S, C, R = 3, 12, 6, 7, 3
    lm = torch.randn(B, S + 1, C, generator=g, dtype=torch.float64)
    am = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    symbols = torch.randint(1, C, (B, S), generator=g)
    boundary = torch.tensor([[0, 0, 6, 12], [0, 0, 4, 9], [0, 0, 1, 6]])
    _, (px_grad, py_grad) = rnnt_loss_simple(lm, am, symbols, 0, boundary, rnnt_type, return_grad=True)
    ranges = get_rnnt_prune_ranges_deprecated(px_grad, py_grad, boundary, R)
    starts = torch.zeros(B, T, dtype=torch.int64)
    for b in range(B):
        for t in range(T):
            mass = [
                float(sum(py_grad[b, s, t] + (px_grad[b, s, t] if s < S else 0.0) for s in range(s0, s0 + R)))
                for s0 in range(S + 2 - R)
            ]
            starts[b, t] = max(range(len(mass)), key=lambda i: (mass[i], -i))
    step = R - 1 if rnnt_type == "regular" else 1
    assert torch.equal(ranges, _reference_ranges(starts, boundary, R, step))


def test_prune_ranges_follow_the_paper_rule_against_loops():
    g = torch.Generator().manual_seed(10)
    B, T, S, C, R = 2, 10, 6, 5, 3
    lm = torch.randn(B, S + 1, C, generator=g, dtype=torch.float64)
    am = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    symbols = torch.randint(1, C, (B, S), generator=g)
    boundary = torch.tensor([[0, 0, 6, 10], [0, 0, 3, 7]])
    _, (px_grad, py_grad) = rnnt_loss_simple(lm, am, symbols, 0, boundary, return_grad=True)
    ranges = get_rnnt_prune_ranges(px_grad, py_grad, boundary, R)
    starts = torch.zeros(B, T, dtype=torch.int64)
    for b in range(B):
        for t in range(T):
            mass = [
                float(py_grad[b, s0 : s0 + R, t].sum() - (px_grad[b, s0 - 1, t] if s0 > 0 else 0.0))
                for s0 in range(S + 2 - R)
            ]
            starts[b, t] = max(range(len(mass)), key=lambda i: (mass[i], -i))
    assert torch.equal(ranges, _reference_ranges(starts, boundary, R, R - 1))


def test_do_rnnt_pruning_accepts_different_encoder_and_decoder_widths():
    g = torch.Generator().manual_seed(11)
    am = torch.randn(2, 4, 3, generator=g)
    lm = torch.randn(2, 6, 5, generator=g)
    ranges = torch.tensor([[[0, 1], [1, 2], [2, 3], [4, 5]], [[0, 1], [0, 1], [1, 2], [1, 2]]])
    am_p, lm_p = do_rnnt_pruning(am, lm, ranges)
    assert am_p.shape == (2, 4, 2, 3) and lm_p.shape == (2, 4, 2, 5)
    assert torch.equal(am_p[1, 2, 1], am[1, 2])
    assert torch.equal(lm_p[0, 3, 1], lm[0, 5]) and torch.equal(lm_p[1, 2, 0], lm[1, 1])


def test_fix_for_boundary_sets_each_end_frame_column_in_place():
    px = torch.zeros(2, 3, 5)
    out = fix_for_boundary(px, torch.tensor([[0, 0, 3, 4], [0, 0, 2, 2]]))
    assert out is px
    assert bool(torch.isneginf(px[0, :, 4]).all()) and bool(torch.isneginf(px[1, :, 2]).all())
    assert int(torch.isneginf(px).sum()) == 6
    assert fix_for_boundary(px) is px


@pytest.mark.parametrize("rnnt_type", TYPES)
def test_pruned_loss_return_grad_is_the_occupancy_on_the_full_lattice(rnnt_type):
    boundary = torch.tensor([[0, 0, 4, 6], [0, 0, 2, 5]])
    am, lm, symbols, ranges, logits = pruned_case(12, (2, 6, 4, 5), boundary, rnnt_type, 3)
    loss, (px_occ, py_occ) = rnnt_loss_pruned(
        logits, symbols, ranges, 0, boundary, rnnt_type, reduction="none", return_grad=True
    )
    px, py = get_rnnt_logprobs_pruned(logits, symbols, ranges, 0, boundary, rnnt_type)
    px.requires_grad_()
    py.requires_grad_()
    brute_lattice(px, py, boundary).sum().backward()
    assert_close(px_occ, px.grad, rtol=1e-8, atol=1e-12)
    assert_close(py_occ, py.grad, rtol=1e-8, atol=1e-12)
    full = rnnt_loss(am[:, :, None] + lm[:, None], symbols, 0, boundary, rnnt_type, reduction="none")
    assert bool((loss >= full - 1e-9).all())  # a band keeps a subset of the paths
