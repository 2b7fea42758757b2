"""Weights & Biases logging as NeMo's ``exp_manager`` offers it.

``exp_manager.create_wandb_logger=true`` adds Lightning's ``WandbLogger`` beside the TensorBoard and
CSV loggers; ``exp_manager.wandb_logger_kwargs`` (``name``, ``project``, ``entity``, ``tags``,
``offline``, ...) are passed to it, as in NeMo. The run's files go under ``<exp_dir>/wandb``; the
resolved config is logged as the run's config. ``WANDB_MODE=offline`` (or ``offline: true``) keeps
everything local, for ``wandb sync`` later. Needs the ``wandb`` extra: ``pip install 'myna[wandb]'``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

__all__ = ["build_wandb_logger", "finish_wandb"]


def build_wandb_logger(cfg: DictConfig, exp_dir: Path, version: str):
    """Lightning's WandbLogger for this run, with the config logged. Raises ValueError when wandb is
    not installed."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ValueError("exp_manager.create_wandb_logger=true needs Weights & Biases: "
                         "pip install 'myna[wandb]' (or set it to false)") from None
    from lightning.pytorch.loggers import WandbLogger

    kwargs = OmegaConf.to_container(cfg.exp_manager.wandb_logger_kwargs, resolve=True) or {}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    kwargs.setdefault("name", f"{cfg.exp_manager.name}-{version}")
    kwargs.setdefault("project", cfg.exp_manager.name)
    save_dir = Path(kwargs.pop("save_dir", exp_dir))
    save_dir.mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(save_dir=str(save_dir), **kwargs)
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return logger


def finish_wandb(loggers) -> None:
    """End the W&B run of any WandbLogger in ``loggers``: the run's config and summary files are
    written then (Lightning leaves the run open)."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger" and getattr(logger, "_experiment", None) is not None:
            logger.experiment.finish()
