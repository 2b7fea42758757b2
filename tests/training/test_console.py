"""myna.training.console: one line per log record, the config summary, the step progress."""

import io
import logging
from pathlib import Path
from types import SimpleNamespace

import torch

from myna.config import load_config
from myna.training.console import StepProgress, config_summary, format_duration, setup_logging


def _trainer(step, **metrics):
    return SimpleNamespace(global_step=step, is_global_zero=True, sanity_checking=False,
                           callback_metrics={k: torch.tensor(v) for k, v in metrics.items()})


def test_plain_lines_off_a_terminal_show_step_of_max_eta_and_wer_in_percent():
    out = io.StringIO()
    progress = StepProgress(max_steps=30, every_n_steps=10, stream=out, tty=False)
    progress.on_train_start(_trainer(0), None)
    for step in range(1, 21):
        progress.on_train_batch_end(_trainer(step, train_loss=1.5), None, None, None, step - 1)
    progress.on_validation_end(_trainer(20, val_wer=0.0273, val_cer=0.01, val_loss=0.5), None)
    for step in range(21, 31):
        progress.on_train_batch_end(_trainer(step, train_loss=1.25), None, None, None, step - 1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and all(len(line) < 120 for line in lines)
    assert lines[0].startswith("step 10/30 (33%) loss 1.500, ") and "ETA " in lines[0]
    assert lines[2] == "validation at step 20: WER 2.73%, CER 1.00%, loss 0.500"
    assert lines[3].startswith("step 30/30 (100%) loss 1.250, val WER 2.73%, ")


def test_a_terminal_gets_one_bar_over_the_global_step():
    out = io.StringIO()
    progress = StepProgress(max_steps=50, stream=out, tty=True)
    progress.on_train_start(_trainer(20), None)  # resumed at step 20
    progress.on_train_batch_end(_trainer(21, train_loss=2.0), None, None, None, 0)
    progress.on_train_end(_trainer(21), None)
    assert "step 21/50" in out.getvalue()


def test_lightning_lines_appear_once_and_its_banner_is_dropped():
    import lightning  # noqa: F401  (adds its own handler on import)

    out = io.StringIO()
    setup_logging(stream=out)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False, used: False")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info(
        "\U0001f4a1 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
    logging.getLogger("lightning.pytorch.callbacks").info("something useful")
    logging.getLogger("myna.train").info("hello")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("something useful") and lines[1].endswith("] hello")


def test_config_summary_is_short_and_names_the_full_config(tmp_path):
    cfg = load_config("contextnet_rnnt_dummy", ["model.train_ds.manifest_filepath=train.json"])
    text = config_summary(cfg, tmp_path / "config.yaml")
    assert len(text.splitlines()) < 12
    assert str(tmp_path / "config.yaml") in text and "600 steps" in text and "train.json, batch 16" in text


def test_format_duration():
    assert [format_duration(s) for s in (5, 125, 3725)] == ["5s", "2m05s", "1h02m"]
