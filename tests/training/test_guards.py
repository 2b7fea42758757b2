"""myna.training.guards and state: bad utterances and non-finite batches are named, counted and
skipped; past the limit the run stops with one line; a run stopped after a checkpoint and
resumed logs the uninterrupted run's losses step for step."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from myna.cli import main
from myna.config import load_config
from myna.training import run as run_module
from myna.training.guards import TrainingAborted, TrainingGuard, pop_guard_options
from myna.training.plots import read_metrics
from myna.training.state import StepSeeds, step_seed

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "data" / "espeak_digits"


def _subset(dst: Path, n: int, nan: int = 0) -> Path:
    """The first ``n`` bundled training utterances; the first ``nan`` of them replaced by float
    WAVs full of NaN (same duration)."""
    rows = [json.loads(line) for line in (CORPUS / "train.json").read_text().splitlines()[:n]]
    for i, row in enumerate(rows):
        row["audio_filepath"] = str(CORPUS / row["audio_filepath"])
        if i < nan:
            bad = dst.parent / f"nan{i}.wav"
            sf.write(bad, np.full(int(16000 * row["duration"]), np.nan, "float32"), 16000, subtype="FLOAT")
            row["audio_filepath"] = str(bad)
    dst.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


def _losses(metrics: Path) -> dict[int, float]:
    return dict(read_metrics(metrics)["train_loss"])


def _train_args(tmp: Path, manifest: Path, steps: int, *extra: str) -> list[str]:
    return ["train", str(REPO / "conf" / "contextnet_rnnt_dummy.yaml"), f"model.train_ds.manifest_filepath={manifest}",
            f"exp_manager.exp_dir={tmp / 'exp'}", f"trainer.max_steps={steps}", "model.train_ds.batch_size=4",
            "model.tokenizer.vocab_size=24", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
            "exp_manager.plot_learning_curve=false", *extra]


def test_training_with_nan_files_names_and_counts_them_and_finishes(tmp_path, caplog, capsys):
    manifest = _subset(tmp_path / "train.json", 12, nan=3)
    caplog.set_level("WARNING")
    assert main(_train_args(tmp_path, manifest, 3)) == 0
    skipped = {m for m in caplog.messages if m.startswith("skipped utterance")}
    assert {s.split(":", 2)[1].split()[0] for s in skipped} <= {"1", "2", "3"}  # train.json:LINE
    assert any("training skipped 3 utterance(s) with bad audio" in m for m in caplog.messages) or \
        len({s.split(":")[1] for s in skipped}) <= 3
    assert all("NaN/inf" in s for s in skipped)
    assert (tmp_path / "exp" / "contextnet_rnnt_dummy.nemo").is_file()


def test_an_epoch_of_only_bad_audio_stops_with_one_line(tmp_path, capsys):
    manifest = _subset(tmp_path / "train.json", 3, nan=3)
    # the tokenizer needs text; give it a folder trained on the same texts
    from myna.text import train_sentencepiece

    train_sentencepiece([json.loads(l)["text"] for l in manifest.read_text().splitlines()] * 5, tmp_path / "tok",
                        vocab_size=16)
    assert main(_train_args(tmp_path, manifest, 3, f"model.tokenizer.dir={tmp_path / 'tok'}",
                            "model.tokenizer.vocab_size=16")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("myna train: error: epoch 0: no batch could be trained on; 3 utterance(s) skipped")
    assert "train.json:1: audio file" in err and "NaN/inf" in err


def _batch(ids=("a.json:1", "a.json:2")) -> dict:
    return {"audio": torch.zeros(len(ids), 10), "ids": list(ids)}


def test_non_finite_loss_skips_the_batch_and_counts_it():
    guard = TrainingGuard(skip_nan_grad=True, max_skipped_batches=2)
    assert guard.loss_ok(torch.tensor(1.5), _batch(), step=0)
    assert not guard.loss_ok(torch.tensor(float("nan")), _batch(), step=1)
    assert not guard.loss_ok(torch.tensor(float("inf")), _batch(), step=2)
    assert guard.skipped_batches == 2
    with pytest.raises(TrainingAborted, match=r"step 3: loss is nan; batch of a\.json:1, a\.json:2; 3 batches "
                                              r"skipped, more than trainer\.max_skipped_batches=2"):
        guard.loss_ok(torch.tensor(float("nan")), _batch(), step=3)


def test_without_skip_nan_grad_the_first_non_finite_loss_stops_naming_the_batch():
    guard = TrainingGuard(skip_nan_grad=False)
    with pytest.raises(TrainingAborted, match=r"step 7: loss is inf; batch of x:1 .*skip_nan_grad=false"):
        guard.loss_ok(torch.tensor(float("inf")), _batch(["x:1"]), step=7)


def test_non_finite_gradients_leave_the_parameters_and_optimizer_state_untouched():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    moments = optimizer.state_dict()["state"][0]["exp_avg"].clone()
    model.weight.grad = torch.full_like(model.weight, float("nan"))
    model.bias.grad = torch.ones_like(model.bias)

    class _Trainer:
        global_step = 5

    guard = TrainingGuard(skip_nan_grad=True, max_skipped_batches=-1)
    guard.on_before_optimizer_step(_Trainer(), None, optimizer)
    optimizer.step()
    assert guard.skipped_batches == 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(optimizer.state_dict()["state"][0]["exp_avg"], moments)


def test_guard_state_survives_a_checkpoint():
    guard = TrainingGuard()
    guard.admit({"skipped": [("m.json:4", "NaN")], "audio": torch.zeros(1, 1)})
    guard.loss_ok(torch.tensor(float("nan")), _batch(), step=0)
    fresh = TrainingGuard()
    fresh.load_state_dict(guard.state_dict())
    assert fresh.bad_utterances == {"m.json:4": "NaN"} and fresh.skipped_batches == 1


def test_guard_keys_are_taken_out_of_the_trainer_section():
    kwargs = {"max_steps": 3, "skip_nan_grad": False, "max_skipped_batches": 4}
    assert pop_guard_options(kwargs) == {"skip_nan_grad": False, "max_skipped_batches": 4}
    assert kwargs == {"max_steps": 3}
    assert {"skip_nan_grad", "max_skipped_batches"} <= set(load_config(None).trainer)


def test_step_seeds_make_each_step_draw_the_same_numbers_whatever_came_before():
    class _Trainer:
        global_step = 0
        global_rank = 0

    def draws(seeds: StepSeeds, trainer) -> tuple:
        seeds.on_train_batch_start(trainer, None, None, 0)
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    trainer = _Trainer()
    first = StepSeeds(7)
    trainer.global_step = 4
    a = draws(first, trainer)
    torch.rand(100), random.random()  # anything drawn in between (validation, loader start-up)
    resumed = StepSeeds(7)
    assert draws(resumed, trainer) == a
    assert draws(resumed, trainer) != a  # a second batch of the same step (accumulation) draws afresh
    assert step_seed(7, 0, 4, 0) != step_seed(7, 1, 4, 0) != step_seed(8, 0, 4, 0)


class _Killed(RuntimeError):
    pass


@pytest.mark.parametrize("path", ["plain", "buckets"])
def test_a_run_stopped_after_a_checkpoint_resumes_the_same_loss_curve(tmp_path, monkeypatch, path):
    """In-process stand-in for kill -9 (the benchmark benchmarks/resume_exact.py uses SIGKILL):
    the run dies as step 5 starts, after the checkpoint of step 4; the rerun logs the losses of
    the uninterrupted run to 1e-6 (with dropout, SpecAugment, dither; semi-sorted batches of one
    manifest, or two duration buckets)."""
    from myna.text import train_sentencepiece

    manifest = _subset(tmp_path / "train.json", 24)
    rows = manifest.read_text().splitlines()
    train_sentencepiece([json.loads(r)["text"] for r in rows], tmp_path / "tok", vocab_size=24)
    if path == "plain":
        data = [f"model.train_ds.manifest_filepath={manifest}", "model.train_ds.batch_size=4"]
    else:
        rows.sort(key=lambda r: json.loads(r)["duration"])
        (tmp_path / "b1.json").write_text("\n".join(rows[:12]) + "\n")
        (tmp_path / "b2.json").write_text("\n".join(rows[12:]) + "\n")
        data = [f"model.train_ds.manifest_filepath=[[{tmp_path / 'b1.json'}],[{tmp_path / 'b2.json'}]]",
                "model.train_ds.batch_size=1", "++model.train_ds.bucketing_batch_size=[4,3]"]
    common = [*data, "trainer.max_steps=8", f"model.tokenizer.dir={tmp_path / 'tok'}",
              "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
              "exp_manager.plot_learning_curve=false", "exp_manager.checkpoint_every_n_steps=4",
              "trainer.limit_val_batches=0"]

    def cfg(exp: str):
        return load_config(REPO / "conf" / "contextnet_rnnt_dummy.yaml", common + [f"exp_manager.exp_dir={tmp_path / exp}"])

    run_module.train(cfg("whole"))

    class DiesAtStep5(StepSeeds):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 5:
                raise _Killed()
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    monkeypatch.setattr(run_module, "StepSeeds", DiesAtStep5)
    with pytest.raises(_Killed):
        run_module.train(cfg("killed"))
    monkeypatch.setattr(run_module, "StepSeeds", StepSeeds)
    torch.manual_seed(999), random.seed(999), np.random.seed(999)  # a fresh process starts elsewhere
    run_module.train(cfg("killed"))
    whole = _losses(tmp_path / "whole" / "logs" / "version_0" / "metrics.csv")
    resumed = _losses(tmp_path / "killed" / "logs" / "version_1" / "metrics.csv")
    assert sorted(resumed) == [4, 5, 6, 7]
    assert max(abs(resumed[s] - whole[s]) for s in resumed) <= 1e-6
