"""float32 RNN-T gradients against float64 ones, at a shape where float32 accumulation shows.

At (B, T, S, C) = (2, 200, 50, 100) the total log-probability is about -1,200, where float32
keeps only ~1e-4 absolute: a lattice accumulated in float32 gets its gradients wrong by ~3e-4 of
the largest one and its blank occupancies above 1 (the sum 0.015 above the exact 400). The
recursion accumulates in float64, so float32 inputs must give float64's answer to ~1e-6.
"""

import torch

from myna.losses import (
    do_rnnt_pruning,
    get_rnnt_prune_ranges,
    rnnt_loss,
    rnnt_loss_pruned,
    rnnt_loss_simple,
)

B, T, S, C = 2, 200, 50, 100


def _inputs(dtype):
    g = torch.Generator().manual_seed(0)
    am = torch.randn(B, T, C, generator=g).to(dtype).requires_grad_()
    lm = torch.randn(B, S + 1, C, generator=g).to(dtype).requires_grad_()
    symbols = torch.randint(1, C, (B, S), generator=g)
    return am, lm, symbols


def _rel_err(x, ref):
    return float((x.double() - ref).abs().max() / ref.abs().max())


def test_float32_simple_loss_gradients_and_occupancies_match_float64():
    out = {}
    for dtype in (torch.float32, torch.float64):
        am, lm, symbols = _inputs(dtype)
        loss, (px_grad, py_grad) = rnnt_loss_simple(lm, am, symbols, 0, reduction="sum", return_grad=True)
        loss.backward()
        out[dtype] = (loss, am.grad, lm.grad, px_grad, py_grad)
    f32, f64 = out[torch.float32], out[torch.float64]
    assert abs(f32[0].item() - f64[0].item()) < 1e-5 * abs(f64[0].item())
    for got, ref in zip(f32[1:], f64[1:]):
        assert got.dtype == torch.float32
        assert _rel_err(got, ref) < 2e-5
    px_grad, py_grad = f32[3], f32[4]
    for occ in (px_grad, py_grad):
        assert float(occ.min()) >= 0.0 and float(occ.max()) <= 1.0
    # every path leaves each frame by exactly one blank: the blank occupancies sum to B * T
    assert abs(float(py_grad.double().sum()) - B * T) < 1e-3


def test_float32_full_and_pruned_loss_gradients_match_float64():
    grads = {}
    ranges = None
    for dtype in (torch.float64, torch.float32):
        am, lm, symbols = _inputs(dtype)
        full = rnnt_loss(am[:, :, None] + lm[:, None], symbols, 0, reduction="sum")
        g_full = torch.autograd.grad(full, (am, lm))
        simple, (px_grad, py_grad) = rnnt_loss_simple(lm, am, symbols, 0, reduction="sum", return_grad=True)
        if ranges is None:  # the float64 ranges for both, so that both compute the same function
            ranges = get_rnnt_prune_ranges(px_grad, py_grad, torch.tensor([[0, 0, S, T]] * B), 5)
        am_p, lm_p = do_rnnt_pruning(am, lm, ranges)
        pruned = rnnt_loss_pruned(am_p + lm_p, symbols, ranges, 0, reduction="sum")
        g_pruned = torch.autograd.grad(simple + pruned, (am, lm))
        grads[dtype] = g_full + g_pruned
    for got, ref in zip(grads[torch.float32], grads[torch.float64]):
        assert _rel_err(got, ref) < 2e-5
