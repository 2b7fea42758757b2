"""Averaged weights: checkpoint averaging after training (``myna average``) and an EMA during it.

Checkpoint averaging follows icefall's ``average_checkpoints``: the element-wise mean of the
model's state dicts from several checkpoints of one run (floating tensors averaged in float64 and
cast back; integer buffers such as batch-norm counters floor-divided), chosen as the last N
step checkpoints or those in a step range. The result is written as a ``.nemo`` built from the
run's ``config.yaml`` and tokenizer, so every myna command and NeMo read it.

The EMA is Lightning's ``EMAWeightAveraging`` configured from NeMo's ``exp_manager.ema`` keys:
validation and the final model use the averaged weights; checkpoints carry both (Lightning puts
the EMA in ``state_dict`` and the trained weights in ``current_model_state``). Checkpoint
averaging reads the trained weights unless asked for the EMA (``ema=True``).

>>> paths = select_checkpoints(exp_dir / "checkpoints", last=5)
>>> write_averaged_nemo(exp_dir, paths, exp_dir / "averaged.nemo")
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

__all__ = ["select_checkpoints", "average_state_dicts", "write_averaged_nemo", "ema_callback", "checkpoint_step"]

log = logging.getLogger("myna.train")

_STEP = re.compile(r"step(\d+)")


def checkpoint_step(path: Path) -> int | None:
    """The step in a checkpoint's name (``step300.ckpt`` -> 300); None for ``last.ckpt`` and others."""
    match = _STEP.fullmatch(Path(path).name.split(".")[0])
    return int(match.group(1)) if match else None


def select_checkpoints(folder: Path, last: int | None = None, steps: tuple[int, int] | None = None) -> list[Path]:
    """Step checkpoints of a run, oldest first: the ``last`` N, or those with ``steps[0] <= step <= steps[1]``.

    Raises:
        ValueError: naming the folder, when there are fewer checkpoints than asked for or none in range.
    """
    if (last is None) == (steps is None):
        raise ValueError("give either the number of last checkpoints or a step range")
    found = sorted((s, p) for p in Path(folder).glob("step*") if (s := checkpoint_step(p)) is not None)
    if not found:
        raise ValueError(f"{folder}: no step checkpoints (step<N>.ckpt); was exp_manager.checkpoint_every_n_steps set?")
    if last is not None:
        if last < 1 or last > len(found):
            raise ValueError(f"{folder}: asked for the last {last} checkpoints, there are {len(found)} "
                             f"(steps {[s for s, _ in found]})")
        return [p for _, p in found[-last:]]
    low, high = steps
    chosen = [p for s, p in found if low <= s <= high]
    if not chosen:
        raise ValueError(f"{folder}: no checkpoint with a step in [{low}, {high}] (steps {[s for s, _ in found]})")
    return chosen


def average_state_dicts(state_dicts: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of state dicts with the same keys and shapes.

    Floating tensors are summed in float64 and cast back to their dtype; integer tensors are
    summed and floor-divided (icefall's rule for batch-norm's ``num_batches_tracked``).

    Raises:
        ValueError: naming the first key that is missing in, or differs in shape across, the inputs.
    """
    if not state_dicts:
        raise ValueError("nothing to average")
    first = state_dicts[0]
    n = len(state_dicts)
    out = {}
    for key, value in first.items():
        total = torch.zeros_like(value, dtype=torch.float64 if value.is_floating_point() else torch.int64)
        for i, sd in enumerate(state_dicts):
            if key not in sd or sd[key].shape != value.shape:
                raise ValueError(f"checkpoint {i}: key {key!r} is missing or has another shape")
            total += sd[key].to(total.dtype)
        out[key] = (total / n).to(value.dtype) if value.is_floating_point() else (total // n).to(value.dtype)
    return out


def _model_weights(path: Path, ema: bool = False) -> dict[str, torch.Tensor]:
    """The ``model.`` weights of a Lightning checkpoint of ``ASRTask``, without the prefix: one file,
    or the folder of an FSDP sharded checkpoint (its shards gathered in memory).

    A run with ``exp_manager.ema`` keeps the trained weights under ``current_model_state`` and the
    EMA under ``state_dict``: the trained ones are read unless ``ema``.

    Raises:
        ValueError: naming the checkpoint, when it is not myna's or holds no EMA but ``ema`` asks for one.
    """
    if path.is_dir():
        from lightning.fabric.utilities.load import _load_distributed_checkpoint

        checkpoint = _load_distributed_checkpoint(path)
        state, trained = checkpoint.get("model"), None
    else:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state, trained = checkpoint.get("state_dict"), checkpoint.get("current_model_state")
    if ema and trained is None:
        raise ValueError(f"{path}: holds no EMA of the weights (was exp_manager.ema.enable set?)")
    if not ema and trained is not None:
        state = trained
    if state is None:
        raise ValueError(f"{path}: not a myna training checkpoint (no state_dict)")
    return {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}


def write_averaged_nemo(exp_dir: Path, checkpoints: Sequence[Path], out: Path, ema: bool = False) -> Path:
    """Average ``checkpoints`` of the run in ``exp_dir`` and write the model as a ``.nemo``
    (their trained weights, or their EMA weights with ``ema``; one checkpoint is written as it is)."""
    from myna.config import load_config
    from myna.interop.adapter import build_model
    from myna.interop.nemo import save_nemo
    from myna.text import load_tokenizer

    exp_dir = Path(exp_dir)
    config_path = exp_dir / "config.yaml"
    if not config_path.is_file():
        raise ValueError(f"{exp_dir}: no config.yaml (not a myna run folder)")
    cfg = load_config(config_path)
    model = build_model(cfg.model, load_tokenizer(cfg.model.tokenizer.dir))
    averaged = average_state_dicts([_model_weights(Path(p), ema=ema) for p in checkpoints])
    missing, unexpected = model.load_state_dict(averaged, strict=False)
    if missing or unexpected:
        raise ValueError(f"{checkpoints[0]}: weights do not fit {config_path}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    log.info("averaged %d checkpoints%s: %s", len(checkpoints), " (EMA weights)" if ema else "",
             ", ".join(Path(p).name for p in checkpoints))
    return save_nemo(model.eval(), out, config=cfg)


def ema_callback(ema: Mapping[str, Any]) -> Any:
    """Lightning's EMA callback from ``exp_manager.ema`` (None when not enabled)."""
    if not ema or not ema.get("enable"):
        return None
    unknown = sorted(set(ema) - {"enable", "decay", "every_n_steps", "cpu_offload"})
    if unknown:
        raise ValueError(f"exp_manager.ema: unknown key(s) {unknown}")
    decay = float(ema.get("decay", 0.999))
    if not 0.0 < decay < 1.0:
        raise ValueError(f"exp_manager.ema.decay must be in (0, 1), got {decay}")
    from lightning.pytorch.callbacks import EMAWeightAveraging

    return EMAWeightAveraging(decay=decay, update_every_n_steps=int(ema.get("every_n_steps", 1)),
                              device="cpu" if ema.get("cpu_offload") else None)
