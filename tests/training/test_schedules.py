"""Warm-up + Noam / cosine schedules."""

import pytest
import torch

from myna.training.schedules import build_scheduler


def _lrs(sched, steps, lr=1.0, max_steps=100):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = build_scheduler(opt, sched, max_steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return out


def test_cosine_warms_up_linearly_then_decays_to_min_lr():
    lrs = _lrs({"name": "CosineAnnealing", "warmup_steps": 10, "min_lr": 0.01}, 101)
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[100] == pytest.approx(0.01)


def test_noam_peaks_at_the_end_of_warmup():
    lrs = _lrs({"name": "NoamAnnealing", "warmup_steps": 20, "min_lr": 0.0}, 60)
    assert max(range(60), key=lrs.__getitem__) == 19
    assert lrs[19] == pytest.approx(1.0)
    assert lrs[59] == pytest.approx((20 / 60) ** 0.5)


def test_warmup_ratio_and_unknown_name():
    lrs = _lrs({"name": "CosineAnnealing", "warmup_ratio": 0.1}, 11)
    assert lrs[9] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="Polynomial"):
        _lrs({"name": "Polynomial"}, 1)


def test_polynomial_decay_warms_up_then_falls_linearly_to_min_lr():
    lrs = _lrs({"name": "PolynomialDecayAnnealing", "warmup_steps": 10, "min_lr": 0.0, "power": 1.0}, 101)
    assert lrs[9] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5)
    assert lrs[100] == pytest.approx(0.0)


def test_tri_stage_ramps_holds_and_decays_exponentially():
    sched = {"name": "TriStage", "phase_ratio": [0.1, 0.4, 0.5], "init_lr_scale": 0.01, "final_lr_scale": 0.05}
    lrs = _lrs(sched, 101)
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[5] == pytest.approx(0.01 + 0.99 * 0.5)
    assert all(lr == pytest.approx(1.0) for lr in lrs[10:50])
    assert lrs[75] == pytest.approx(0.05 ** 0.5, rel=1e-6)  # halfway through the decay, geometrically
    assert lrs[100] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="phase_ratio"):
        _lrs({**sched, "phase_ratio": [0.5, 0.5, 0.5]}, 2)
