"""What ``myna train`` prints: one line per log record, a short config summary, a step bar.

- :func:`setup_logging`: one handler, one line per record; Lightning's own handlers removed (they
  printed every Lightning line twice) and its banner lines (accelerator availability, the
  logging-product tip, checkpoint-restore chatter that myna says itself) dropped unless verbose.
- :func:`config_summary`: the dozen lines that say what will be trained, and where the full
  resolved ``config.yaml`` is, instead of the whole config.
- :class:`StepProgress`: on a terminal, a bar over the global step (``step 120/600``) with ETA,
  loss and the latest validation WER in percent; otherwise (a log file, a pipe) a plain line every
  ``trainer.log_every_n_steps`` steps. Each validation prints one line.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

import lightning as L
from omegaconf import DictConfig, ListConfig

__all__ = ["setup_logging", "config_summary", "StepProgress", "format_duration"]

_LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")
# Lightning INFO lines that are banner noise for a myna user (myna prints its own resume line).
_NOISE = ("GPU available", "TPU available", "HPU available", "IPU available", "\U0001f4a1 Tip",
          "You are using a CUDA device", "LOCAL_RANK", "Restoring states from the checkpoint path",
          "Restored all states from the checkpoint", "Loading `train_dataloader` to estimate",
          "`Trainer.fit` stopped", "Seed set to", "Using default `ModelCheckpoint`",
          "Trainer already configured with model summary", "`Trainer(limit_", "`weights_only` was not set")


class _DropLightningNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(("lightning", "pytorch_lightning")) or record.levelno >= logging.WARNING:
            return True
        return not record.getMessage().lstrip().startswith(_NOISE)


def setup_logging(verbose: bool = False, stream: TextIO | None = None) -> None:
    """One stream handler on the root logger; Lightning's records pass through it once."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_myna_console", False):  # ours from an earlier call; others stay
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._myna_console = True
    handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S"))
    if not verbose:
        handler.addFilter(_DropLightningNoise())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            logger.removeHandler(h)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    for name in ("fsspec", "urllib3", "botocore", "matplotlib", "PIL", "wandb"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not verbose:
        # Expected on every resume, or about Lightning's own internals: nothing for the user to do.
        for message in (r"Checkpoint directory .* exists and is not empty", r".*treespec, LeafSpec",
                        r"The number of training batches \(\d+\) is smaller than the logging interval",
                        r"You defined a `validation_step` but have no `val_dataloader`"):
            warnings.filterwarnings("ignore", message=message)


def format_duration(seconds: float) -> str:
    """``1h02m``, ``4m05s``, ``12s``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _data_line(ds: DictConfig) -> str:
    manifest = ds.get("manifest_filepath")
    if not manifest:
        return "none"
    parts = [", ".join(map(str, manifest)) if isinstance(manifest, (list, ListConfig)) else str(manifest)]
    if ds.get("is_tarred"):
        parts.append("tarred")
    if ds.get("use_lhotse"):
        parts.append("lhotse")
    if ds.get("batch_duration"):
        parts.append(f"batch_duration {ds.batch_duration} s")
    elif ds.get("batch_size"):
        parts.append(f"batch {ds.batch_size}")
    return ", ".join(parts)


def config_summary(cfg: DictConfig, config_path: Path, model: Any = None, tokenizer: Any = None) -> str:
    """A few lines on what this run trains and where its full config is."""
    m, t, em = cfg.model, cfg.trainer, cfg.exp_manager
    lines = [f"run {cfg.name}: {em.exp_dir} (full config: {config_path})"]
    if model is not None:
        n_params = sum(p.numel() for p in model.parameters())
        encoder = type(getattr(model, "encoder", None)).__name__ if hasattr(model, "encoder") else "?"
        lines.append(f"  model      {type(model).__name__} ({encoder}), {n_params / 1e6:.2f}M parameters")
    if tokenizer is not None:
        lines.append(f"  tokenizer  {m.tokenizer.type}, {tokenizer.vocab_size} pieces ({m.tokenizer.dir})")
    lines.append(f"  train      {_data_line(m.train_ds)}")
    lines.append(f"  validation {_data_line(m.validation_ds)}")
    if m.test_ds.get("manifest_filepath"):
        lines.append(f"  test       {_data_line(m.test_ds)}")
    sched = m.optim.get("sched") or {}
    lines.append(f"  optimizer  {m.optim.name}, lr {m.optim.lr}" + (f", {sched.get('name')} schedule" if sched else "")
                 + (f" (warmup {sched.get('warmup_steps')})" if sched.get("warmup_steps") else ""))
    steps = f"{t.max_steps} steps" if t.max_steps and t.max_steps > 0 else f"{t.max_epochs} epochs"
    lines.append(f"  trainer    {steps}, validation every {t.val_check_interval}, {t.accelerator} x{t.devices}, "
                 f"precision {t.precision}, seed {cfg.seed}")
    return "\n".join(lines)


class StepProgress(L.Callback):
    """Global-step progress: a tqdm bar on a terminal, plain periodic lines otherwise.

    Args:
        max_steps: the run's last step (the bar's total).
        every_n_steps: plain mode prints at multiples of this step (and the last step).
        stream: where to write (default stdout); ``tty`` overrides its ``isatty()``.
    """

    def __init__(self, max_steps: int | None, every_n_steps: int = 10, stream: TextIO | None = None,
                 tty: bool | None = None):
        self.max_steps = max_steps
        self.every = max(1, int(every_n_steps))
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.val_wer: float | None = None
        self._bar = None
        self._start_step = 0
        self._start_time = 0.0

    def _postfix(self, trainer: L.Trainer) -> str:
        parts = []
        loss = trainer.callback_metrics.get("train_loss")
        if loss is not None:
            parts.append(f"loss {float(loss):.3f}")
        if self.val_wer is not None:
            parts.append(f"val WER {100 * self.val_wer:.2f}%")
        return ", ".join(parts)

    def _eta(self, step: int) -> float:
        done = step - self._start_step
        if done <= 0:
            return float("nan")
        return (self.max_steps - step) * (time.perf_counter() - self._start_time) / done

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_step = trainer.global_step
        self._start_time = time.perf_counter()
        if self.max_steps is None:  # no trainer.max_steps: epochs x this rank's batches
            self.max_steps = int(trainer.estimated_stepping_batches)
        if self.tty and trainer.is_global_zero:
            from tqdm import tqdm

            self._bar = tqdm(total=self.max_steps, initial=self._start_step, file=self.stream, unit="step",
                             dynamic_ncols=True, smoothing=0.1,
                             bar_format="step {n_fmt}/{total_fmt} |{bar}| {percentage:3.0f}% "
                                        "[{elapsed}<{remaining}, {rate_fmt}] {postfix}")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        step = trainer.global_step
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix_str(self._postfix(trainer), refresh=False)
        elif step % self.every == 0 or step == self.max_steps:
            rate = (step - self._start_step) / max(time.perf_counter() - self._start_time, 1e-9)
            self.stream.write(f"step {step}/{self.max_steps} ({100 * step / max(self.max_steps, 1):.0f}%) "
                              f"{self._postfix(trainer)}, {rate:.2f} steps/s, ETA {format_duration(self._eta(step))}\n")
            self.stream.flush()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        if "val_wer" not in metrics:
            return
        self.val_wer = float(metrics["val_wer"])
        line = f"validation at step {trainer.global_step}: WER {100 * self.val_wer:.2f}%"
        if "val_cer" in metrics:
            line += f", CER {100 * float(metrics['val_cer']):.2f}%"
        if "val_loss" in metrics:
            line += f", loss {float(metrics['val_loss']):.3f}"
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
            self._bar.set_postfix_str(self._postfix(trainer))
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._close()
