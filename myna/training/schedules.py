"""Learning-rate schedules with linear warm-up, as NeMo names them (``optim.sched.name``).

Each schedule is a function of the optimizer step returning a multiplier of the base lr, wrapped
in ``torch.optim.lr_scheduler.LambdaLR`` and stepped every optimizer step.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch

__all__ = ["build_scheduler", "SCHEDULES"]


def _warmup_steps(sched: Mapping, max_steps: int) -> int:
    warmup = sched.get("warmup_steps") or 0
    ratio = sched.get("warmup_ratio")
    if ratio:
        warmup = int(ratio * max_steps)
    return int(warmup)


def cosine_annealing(base_lr: float, min_lr: float, warmup: int, max_steps: int) -> Callable[[int], float]:
    """Linear warm-up to base_lr, then half a cosine down to min_lr at max_steps."""
    decay_steps = max(1, max_steps - warmup)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / decay_steps)
        lr = min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))
        return lr / base_lr

    return factor


def noam_annealing(base_lr: float, min_lr: float, warmup: int, d_model: int | None) -> Callable[[int], float]:
    """Noam (Vaswani et al.): lr * d_model^-0.5 * min(s^-0.5, s * warmup^-1.5), floored at min_lr.

    With ``d_model`` null the d_model factor is dropped and the peak (at the end of warm-up)
    is scaled to base_lr.
    """
    warmup = max(1, warmup)
    scale = d_model ** -0.5 if d_model else warmup ** 0.5

    def factor(step: int) -> float:
        s = step + 1
        lr = base_lr * scale * min(s ** -0.5, s * warmup ** -1.5)
        return max(lr, min_lr if s > warmup else 0.0) / base_lr

    return factor


def constant(base_lr: float, min_lr: float, warmup: int) -> Callable[[int], float]:
    """Linear warm-up, then constant."""
    return lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0


def polynomial_decay(base_lr: float, min_lr: float, warmup: int, max_steps: int, power: float) -> Callable[[int], float]:
    """Linear warm-up, then ``(base_lr - min_lr) * (1 - progress)^power + min_lr`` (NeMo's
    ``PolynomialDecayAnnealing``; fairseq's ``polynomial_decay`` with power 1 is wav2vec 2.0's
    pre-training schedule)."""
    decay_steps = max(1, max_steps - warmup)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / decay_steps)
        return ((base_lr - min_lr) * (1.0 - progress) ** power + min_lr) / base_lr

    return factor


def tri_stage(max_steps: int, phase_ratio, init_lr_scale: float, final_lr_scale: float) -> Callable[[int], float]:
    """fairseq's ``tri_stage`` (wav2vec 2.0 fine-tuning; DLE's ``exp`` policy): linear from
    ``init_lr_scale * lr`` to ``lr`` over the first ``phase_ratio[0]`` of the steps, hold for
    ``phase_ratio[1]``, then decay exponentially to ``final_lr_scale * lr`` over ``phase_ratio[2]``
    (held there afterwards). The paper's Base-100h run: ratios (0.1, 0.4, 0.5), scales 0.01 and 0.05."""
    ratios = [float(r) for r in phase_ratio]
    if len(ratios) != 3 or abs(sum(ratios) - 1.0) > 1e-6 or min(ratios) < 0:
        raise ValueError(f"optim.sched.phase_ratio={list(phase_ratio)} must be three non-negative fractions summing to 1")
    warmup, hold = int(ratios[0] * max_steps), int(ratios[1] * max_steps)
    decay = max(1, max_steps - warmup - hold)
    decay_rate = -math.log(final_lr_scale) / decay

    def factor(step: int) -> float:
        if step < warmup:
            return init_lr_scale + (1.0 - init_lr_scale) * step / warmup
        if step < warmup + hold:
            return 1.0
        return max(final_lr_scale, math.exp(-decay_rate * (step - warmup - hold)))

    return factor


SCHEDULES = ("CosineAnnealing", "NoamAnnealing", "PolynomialDecayAnnealing", "TriStage", "Constant", "none")


def build_scheduler(optimizer: torch.optim.Optimizer, sched: Mapping | None, max_steps: int):
    """A LambdaLR for ``optim.sched`` (None or name 'none': no scheduler)."""
    if not sched or sched.get("name") in (None, "none"):
        return None
    name = sched["name"]
    base_lr = optimizer.param_groups[0]["lr"]
    min_lr = float(sched.get("min_lr") or 0.0)
    total = int(sched.get("max_steps") or max_steps)
    warmup = _warmup_steps(sched, total)
    if name == "CosineAnnealing":
        if total <= 0:
            raise ValueError("CosineAnnealing needs trainer.max_steps > 0 or optim.sched.max_steps")
        fn = cosine_annealing(base_lr, min_lr, warmup, total)
    elif name == "NoamAnnealing":
        fn = noam_annealing(base_lr, min_lr, warmup, sched.get("d_model"))
    elif name == "PolynomialDecayAnnealing":
        if total <= 0:
            raise ValueError(f"{name} needs trainer.max_steps > 0 or optim.sched.max_steps")
        fn = polynomial_decay(base_lr, min_lr, warmup, total, float(sched.get("power", 1.0)))
    elif name == "TriStage":
        if total <= 0:
            raise ValueError("TriStage needs trainer.max_steps > 0 or optim.sched.max_steps")
        fn = tri_stage(total, sched.get("phase_ratio") or (0.1, 0.4, 0.5), float(sched.get("init_lr_scale", 0.01)),
                       float(sched.get("final_lr_scale", 0.05)))
    elif name == "Constant":
        fn = constant(base_lr, min_lr, warmup)
    else:
        raise ValueError(f"optim.sched.name={name!r} is not supported; choose one of {SCHEDULES}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
