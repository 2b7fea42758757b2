"""training/checkpoint_io.py: checkpoints are written atomically, so a failed write keeps the old one."""

import pytest
import torch

from myna.training import checkpoint_io
from myna.training.checkpoint_io import AtomicCheckpointIO, atomic_torch_save


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full")  # fails halfway through torch.save


def test_atomic_save_writes_a_loadable_file_and_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "last.ckpt"  # the folder is created
    atomic_torch_save({"step": 3, "w": torch.arange(4.0)}, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["step"] == 3 and torch.equal(loaded["w"], torch.arange(4.0))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_a_write_that_fails_midway_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"step": 2, "bad": _Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_the_new_file_replaces_the_old_one_only_after_it_is_complete(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)
    seen = []
    real_replace = checkpoint_io.os.replace

    def replace(src, dst):
        seen.append(torch.load(dst, weights_only=True))  # the old checkpoint is intact until the rename
        seen.append(torch.load(src, weights_only=True))  # and the temp file is complete before it
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint_io.os, "replace", replace)
    atomic_torch_save({"step": 2}, path)
    assert seen == [{"step": 1}, {"step": 2}]
    assert torch.load(path, weights_only=True) == {"step": 2}


def test_lightning_checkpoint_io_saves_atomically_and_loads_back(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "global_step": 7}, tmp_path / "a.ckpt")
    assert io.load_checkpoint(tmp_path / "a.ckpt")["global_step"] == 7
    with pytest.raises(TypeError, match="storage_options"):
        io.save_checkpoint({}, tmp_path / "b.ckpt", storage_options={"x": 1})
    assert not (tmp_path / "b.ckpt").exists()
