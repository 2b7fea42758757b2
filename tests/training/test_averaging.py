"""myna.training.averaging: icefall's checkpoint averaging, the checkpoint choice, the EMA switch."""

from __future__ import annotations

import pytest
import torch

from myna.training.averaging import average_state_dicts, checkpoint_step, ema_callback, select_checkpoints


def test_floats_are_averaged_and_integer_counters_floor_divided():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3), "h": torch.tensor([1.0], dtype=torch.float16)}
    b = {"w": torch.tensor([2.0, 4.0]), "n": torch.tensor(4), "h": torch.tensor([2.0], dtype=torch.float16)}
    c = {"w": torch.tensor([6.0, 0.0]), "n": torch.tensor(4), "h": torch.tensor([4.0], dtype=torch.float16)}
    out = average_state_dicts([a, b, c])
    assert torch.equal(out["w"], torch.tensor([3.0, 2.0]))
    assert out["n"].item() == 3 and out["n"].dtype == torch.int64  # (3 + 4 + 4) // 3
    assert out["h"].dtype == torch.float16 and out["h"].item() == pytest.approx(7 / 3, rel=1e-3)


def test_averaging_mismatched_checkpoints_names_the_key():
    with pytest.raises(ValueError, match="checkpoint 1: key 'w' is missing or has another shape"):
        average_state_dicts([{"w": torch.zeros(2)}, {"w": torch.zeros(3)}])


def _touch(folder, *names):
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_the_last_n_or_a_step_range_of_step_checkpoints_oldest_first(tmp_path):
    _touch(tmp_path, "step60.ckpt", "step600.ckpt", "step120.ckpt", "last.ckpt", "step540.ckpt")
    assert [p.name for p in select_checkpoints(tmp_path, last=2)] == ["step540.ckpt", "step600.ckpt"]
    assert [p.name for p in select_checkpoints(tmp_path, steps=(100, 540))] == ["step120.ckpt", "step540.ckpt"]
    assert checkpoint_step(tmp_path / "last.ckpt") is None and checkpoint_step(tmp_path / "step60.ckpt") == 60
    with pytest.raises(ValueError, match=r"asked for the last 5 checkpoints, there are 4 \(steps \[60, 120, 540, 600\]\)"):
        select_checkpoints(tmp_path, last=5)
    with pytest.raises(ValueError, match=r"no checkpoint with a step in \[700, 800\]"):
        select_checkpoints(tmp_path, steps=(700, 800))
    with pytest.raises(ValueError, match="no step checkpoints"):
        select_checkpoints(tmp_path / "none", last=1)


def test_ema_takes_nemos_keys_and_is_off_by_default():
    assert ema_callback({"enable": False, "decay": 0.9}) is None
    ema = ema_callback({"enable": True, "decay": 0.99, "every_n_steps": 2, "cpu_offload": True})
    assert ema.update_every_n_steps == 2 and ema._device == torch.device("cpu")
    with pytest.raises(ValueError, match=r"exp_manager.ema: unknown key\(s\) \['validate_original_weights'\]"):
        ema_callback({"enable": True, "validate_original_weights": True})
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        ema_callback({"enable": True, "decay": 1.0})


def test_checkpoints_of_an_ema_run_are_averaged_by_their_trained_weights_unless_ema_is_asked(tmp_path):
    from myna.training.averaging import _model_weights

    trained = {"model.w": torch.tensor([1.0]), "other.x": torch.tensor([5.0])}
    ema = {"model.w": torch.tensor([3.0])}
    # Lightning's EMAWeightAveraging: the EMA in state_dict, the trained weights in current_model_state
    torch.save({"state_dict": ema, "current_model_state": trained}, tmp_path / "step10.ckpt")
    torch.save({"state_dict": trained}, tmp_path / "step20.ckpt")
    assert _model_weights(tmp_path / "step10.ckpt") == {"w": torch.tensor([1.0])}
    assert _model_weights(tmp_path / "step10.ckpt", ema=True) == {"w": torch.tensor([3.0])}
    assert _model_weights(tmp_path / "step20.ckpt") == {"w": torch.tensor([1.0])}
    with pytest.raises(ValueError, match=r"step20.ckpt: holds no EMA of the weights"):
        _model_weights(tmp_path / "step20.ckpt", ema=True)
