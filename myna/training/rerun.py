"""What a second ``myna train`` into the same run folder does: resume, refuse, or start over.

NeMo's ``exp_manager`` keys keep their meaning:

- ``resume_if_exists``: continue from ``checkpoints/last.ckpt`` when there is one; when there is
  none, stop, unless ``resume_ignore_no_checkpoint`` (then start from scratch). Off: start from
  scratch (the folder's checkpoints are replaced as new ones are written).
- ``resume_past_end``: a run that already reached ``trainer.max_steps`` is not resumed unless this
  is set (NeMo's "the last training run has already completed").
- ``resume_from_checkpoint``: this checkpoint instead of ``last.ckpt``.

And one rule of myna's: the folder's ``config.yaml`` is what its checkpoints were trained with, so a
rerun whose config differs stops with the differing keys listed. ``+resume=true`` continues with
the new config anyway (the changes are logged and the new config saved); a new
``exp_manager.exp_dir`` starts a separate run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

__all__ = ["RerunError", "ResumePlan", "plan_resume", "config_differences", "pop_resume_choice", "checkpoint_step",
           "is_checkpoint", "checkpoint_state_file"]

log = logging.getLogger("myna.train")

# Keys that change how a run is shown or resumed, not what it trains.
_FREE_TO_CHANGE = ("trainer.enable_progress_bar", "exp_manager.resume_", "exp_manager.create_wandb_logger",
                   "exp_manager.wandb_logger_kwargs", "data_check.")


class RerunError(ValueError):
    """A rerun into an existing run folder that would not do what its command line says."""


@dataclass
class ResumePlan:
    ckpt_path: str | None  # None: start from scratch
    step: int = 0  # the checkpoint's global step
    changes: list[str] | None = None  # "key: old -> new" accepted with +resume=true


def pop_resume_choice(cfg: DictConfig) -> bool | None:
    """Remove and return the top-level ``resume`` key (``+resume=true``), None when absent."""
    if "resume" not in cfg:
        return None
    value = cfg.resume
    OmegaConf.set_struct(cfg, False)
    del cfg["resume"]
    if not isinstance(value, bool):
        raise RerunError(f"resume={value!r}: use +resume=true (continue with the new config)")
    return value


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: tree}


def config_differences(saved: dict, new: dict, exp_dir: Path) -> list[str]:
    """``key: saved -> new`` for every leaf that differs, except display/resume keys; the trained
    tokenizer folder (``model.tokenizer.dir`` null in the recipe, the run's own folder once saved)
    counts as unchanged."""
    old_flat, new_flat = _flatten(saved), _flatten(new)
    own_tokenizer = str(exp_dir / "tokenizer")
    diffs = []
    for key in sorted(set(old_flat) | set(new_flat)):
        if any(key == p or key.startswith(p) for p in _FREE_TO_CHANGE):
            continue
        old, cur = old_flat.get(key, "<absent>"), new_flat.get(key, "<absent>")
        if key == "model.tokenizer.dir" and cur is None and old is not None and Path(old) == Path(own_tokenizer):
            continue
        if old != cur:
            diffs.append(f"{key}: {old!r} -> {cur!r}")
    return diffs


def is_checkpoint(path: Path) -> bool:
    """A checkpoint file, or the folder of an FSDP sharded checkpoint (its ``meta.pt`` present)."""
    path = Path(path)
    return path.is_file() or (path.is_dir() and (path / "meta.pt").is_file())


def checkpoint_state_file(path: Path) -> Path:
    """The file holding a checkpoint's training state: the file itself, or a sharded folder's ``meta.pt``."""
    path = Path(path)
    return path / "meta.pt" if path.is_dir() else path


def checkpoint_step(path: Path) -> int:
    """The global step stored in a Lightning checkpoint (memory-mapped: the weights are not read)."""
    import torch

    from myna.interop.tensor_files import check_tensor_file

    path = checkpoint_state_file(path)
    check_tensor_file(path)  # truncated, empty or unsafe: one line naming it (issue 12's rule)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint gets the same one-line answer
        raise RerunError(f"{path}: cannot read the checkpoint to resume from ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from None
    return int(state.get("global_step", 0))


def plan_resume(cfg: DictConfig, exp_dir: Path, resume_choice: bool | None) -> ResumePlan:
    """Decide, before anything is written to ``exp_dir``, whether and from where this run resumes.

    Raises:
        RerunError: the saved config differs (without ``+resume=true``), the run is complete
            (without ``resume_past_end``), or ``resume_if_exists`` found no checkpoint (without
            ``resume_ignore_no_checkpoint``).
    """
    em = cfg.exp_manager
    last = exp_dir / "checkpoints" / "last.ckpt"
    explicit = em.get("resume_from_checkpoint")
    if explicit:
        if not is_checkpoint(Path(explicit)):
            raise RerunError(f"exp_manager.resume_from_checkpoint: {explicit} does not exist")
        return ResumePlan(str(explicit), checkpoint_step(Path(explicit)))
    if not em.resume_if_exists:
        if is_checkpoint(last):
            log.warning("exp_manager.resume_if_exists=false: training %s from scratch; its checkpoints are "
                        "replaced as new ones are written", exp_dir)
        return ResumePlan(None)
    if not is_checkpoint(last):
        if (exp_dir / "config.yaml").is_file() and not em.get("resume_ignore_no_checkpoint", True):
            raise RerunError(f"exp_manager.resume_if_exists: no checkpoint in {exp_dir / 'checkpoints'} to resume "
                             "from (set exp_manager.resume_ignore_no_checkpoint=true to start from scratch)")
        return ResumePlan(None)
    step = checkpoint_step(last)
    saved_path = exp_dir / "config.yaml"
    changes: list[str] = []
    if saved_path.is_file():
        saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
        changes = config_differences(saved, OmegaConf.to_container(cfg, resolve=True), exp_dir)
    if changes and not resume_choice:
        listed = "\n  ".join(changes)
        raise RerunError(
            f"{exp_dir} holds a run trained to step {step} with a different config ({saved_path}):\n  {listed}\n"
            "Continue that run with this config: add +resume=true. Start a new run: "
            "set exp_manager.exp_dir to a new folder.")
    max_steps = cfg.trainer.max_steps
    if not changes and max_steps is not None and max_steps > 0 and step >= max_steps and not em.get("resume_past_end"):
        raise RerunError(
            f"{exp_dir} holds a completed run (step {step} of trainer.max_steps={max_steps}); nothing to train. "
            "Train further: trainer.max_steps=N +resume=true. Start a new run: set exp_manager.exp_dir to a new folder.")
    return ResumePlan(str(last), step, changes or None)
