"""Weights & Biases as NeMo's exp_manager offers it, run offline (nothing leaves the machine)."""

import json
from pathlib import Path

import pytest

from myna.cli import main

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "data" / "espeak_digits"


def test_offline_wandb_run_holds_the_metrics_and_the_config(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    # ~10 s: wandb starts its own service process; the only check that the logger is wired as NeMo's.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    rows = [json.loads(line) for line in (CORPUS / "train.json").read_text().splitlines()[:8]]
    train = tmp_path / "train.json"
    train.write_text("".join(json.dumps(dict(r, audio_filepath=str(CORPUS / r["audio_filepath"]))) + "\n"
                             for r in rows))
    exp = tmp_path / "exp"
    assert main(["train", "contextnet_rnnt_dummy", f"model.train_ds.manifest_filepath={train}",
                 f"model.validation_ds.manifest_filepath={train}", f"exp_manager.exp_dir={exp}",
                 "trainer.max_steps=2", "trainer.val_check_interval=2", "model.train_ds.batch_size=4",
                 "model.tokenizer.vocab_size=24", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
                 "exp_manager.create_wandb_logger=true",
                 "exp_manager.wandb_logger_kwargs={name: tiny, project: myna-test}"]) == 0
    runs = list((exp / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # The offline run is one record file for `wandb sync` (wandb-core writes no separate config or
    # summary files offline): its records hold the run's name and project, the config and the metrics.
    records = b"".join(p.read_bytes() for p in runs[0].glob("run-*.wandb"))
    for expected in (b"tiny", b"myna-test", b"contextnet_rnnt_dummy", b"max_steps", b"train_loss", b"val_wer"):
        assert expected in records, expected
