"""myna.training.rerun: what a second run into the same folder does (NeMo's resume keys)."""

from pathlib import Path

import pytest
import torch

from myna.config import load_config, save_config
from myna.training.rerun import RerunError, config_differences, plan_resume, pop_resume_choice


def _cfg(exp, *overrides):
    return load_config("contextnet_rnnt_dummy", [f"exp_manager.exp_dir={exp}", *overrides])


def _finished_run(exp, step=600, *overrides):
    cfg = _cfg(exp, *overrides)
    cfg.model.tokenizer.dir = str(exp / "tokenizer")  # what a run that trained its tokenizer saves
    save_config(cfg, exp / "config.yaml")
    (exp / "checkpoints").mkdir(parents=True)
    torch.save({"global_step": step}, exp / "checkpoints" / "last.ckpt")


def test_fresh_folder_starts_from_scratch(tmp_path):
    plan = plan_resume(_cfg(tmp_path / "exp"), tmp_path / "exp", None)
    assert plan.ckpt_path is None and plan.step == 0


def test_changed_config_stops_listing_each_changed_key(tmp_path):
    exp = tmp_path / "exp"
    _finished_run(exp, 300, "trainer.max_steps=300")
    cfg = _cfg(exp, "trainer.max_steps=600", "model.optim.lr=1e-3")
    with pytest.raises(RerunError) as err:
        plan_resume(cfg, exp, None)
    message = str(err.value)
    assert "trained to step 300" in message
    assert "trainer.max_steps: 300 -> 600" in message and "model.optim.lr: 0.003 -> 0.001" in message
    assert "model.tokenizer.dir" not in message  # the run's own trained tokenizer is not a change
    plan = plan_resume(cfg, exp, True)  # +resume=true
    assert plan.step == 300 and plan.ckpt_path.endswith("last.ckpt")
    assert plan.changes == ["model.optim.lr: 0.003 -> 0.001", "trainer.max_steps: 300 -> 600"]


def test_completed_run_is_not_rerun_unless_resume_past_end(tmp_path):
    exp = tmp_path / "exp"
    _finished_run(exp, 600)
    with pytest.raises(RerunError, match=r"completed run \(step 600 of trainer.max_steps=600\)"):
        plan_resume(_cfg(exp), exp, None)
    assert plan_resume(_cfg(exp, "exp_manager.resume_past_end=true"), exp, None).step == 600


def test_unfinished_run_resumes_from_its_step(tmp_path):
    exp = tmp_path / "exp"
    _finished_run(exp, 395)
    plan = plan_resume(_cfg(exp, "trainer.enable_progress_bar=false"), exp, None)  # display keys may change
    assert (plan.step, plan.changes) == (395, None)


def test_resume_if_exists_keeps_nemo_meaning(tmp_path):
    exp = tmp_path / "exp"
    _finished_run(exp, 100)
    assert plan_resume(_cfg(exp, "exp_manager.resume_if_exists=false"), exp, None).ckpt_path is None
    (exp / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(RerunError, match="no checkpoint"):
        plan_resume(_cfg(exp, "exp_manager.resume_ignore_no_checkpoint=false"), exp, None)
    assert plan_resume(_cfg(exp), exp, None).ckpt_path is None  # myna's default ignores a missing one


def test_plus_resume_is_taken_out_of_the_config():
    cfg = load_config("contextnet_rnnt_dummy", ["+resume=true"])
    assert pop_resume_choice(cfg) is True and "resume" not in cfg
    assert pop_resume_choice(cfg) is None


def test_differences_ignore_display_keys():
    saved = {"trainer": {"max_steps": 1, "enable_progress_bar": True}, "a": {"b": [1, 2]}}
    new = {"trainer": {"max_steps": 1, "enable_progress_bar": False}, "a": {"b": [1, 3]}, "c": 1}
    assert config_differences(saved, new, Path("exp")) == [
        "a.b: [1, 2] -> [1, 3]", "c: '<absent>' -> 1"]
