"""Global rank and world size under each launcher, before the process group (myna.training.distributed)
and after (the trainer, from which ASRDataModule builds each rank's loaders). Launchers are
simulated through their environment variables; no process is started."""

from __future__ import annotations

import lightning as L
import pytest

from myna.training.datamodule import ASRDataModule, global_batch_summary
from myna.training.distributed import build_strategy, launch_rank, wait_for_file

LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE",
                 "TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS", "SLURM_PROCID",
                 "SLURM_LOCALID", "SLURM_NODEID", "SLURM_JOB_NAME", "SLURM_JOB_ID", "SLURM_NODELIST",
                 "SLURM_NTASKS_PER_NODE", "SLURM_JOB_NUM_NODES")

TORCHRUN_NODE1_RANK3 = {"TORCHELASTIC_RUN_ID": "job", "RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                        "GROUP_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29511"}
SLURM_NODE1_TASK3 = {"SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
                     "SLURM_JOB_NAME": "asr", "SLURM_JOB_ID": "4242", "SLURM_NODELIST": "gpu[01-02]",
                     "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NUM_NODES": "2"}


@pytest.fixture
def clean_env(monkeypatch):
    """No launcher variables; and the process-wide rank Lightning sets while building a trainer
    (``rank_zero_only.rank``, which silences loggers on other ranks) restored afterwards."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from lightning_utilities.core.rank_zero import rank_zero_only as utilities_rank_zero_only

    for name in LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    for function in (rank_zero_only, utilities_rank_zero_only):
        monkeypatch.setattr(function, "rank", getattr(function, "rank", 0))
    return monkeypatch


@pytest.mark.parametrize("env, devices, expected", [
    ({}, 1, (0, 1, "single")),
    (TORCHRUN_NODE1_RANK3, 2, (3, 4, "torchrun")),
    (SLURM_NODE1_TASK3, 2, (3, 4, "slurm")),
    ({**SLURM_NODE1_TASK3, "SLURM_JOB_NAME": "bash"}, 2, (0, 1, "single")),  # an interactive allocation
    ({"LOCAL_RANK": "1", "NODE_RANK": "1", "WORLD_SIZE": "4"}, 2, (3, 4, "lightning")),  # Lightning's child
    ({"NODE_RANK": "1"}, 2, (2, 1, "lightning")),  # the process a user started on node 1
])
def test_launch_rank_reads_each_launchers_environment(env, devices, expected):
    rank = launch_rank(env, devices_per_node=devices)
    assert (rank.rank, rank.world_size, rank.launcher) == expected
    assert rank.is_zero == (expected[0] == 0)


class _Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, section, tokenizer, *, train, seed, name, world_size, rank):
        self.calls.append((name, rank, world_size, seed))
        return [f"{name} batch of rank {rank}"]


def _setup_datamodule(trainer: L.Trainer) -> _Recorder:
    build = _Recorder()
    data = ASRDataModule({"manifest_filepath": "train.json", "batch_size": 8}, {"manifest_filepath": "dev.json"},
                         tokenizer=None, seed=5, build=build)
    data.trainer = trainer
    data.setup("fit")
    assert data.train_dataloader() == [f"train_ds batch of rank {trainer.global_rank}"]
    return build


@pytest.mark.parametrize("env, nodes, rank", [(TORCHRUN_NODE1_RANK3, 2, 3), (SLURM_NODE1_TASK3, 2, 3)])
def test_loaders_are_built_for_the_trainers_global_rank(clean_env, env, nodes, rank):
    for key, value in env.items():
        clean_env.setenv(key, value)
    trainer_cfg = {"accelerator": "cpu", "devices": 2, "num_nodes": nodes, "strategy": "ddp"}
    trainer = L.Trainer(**{**trainer_cfg, "strategy": build_strategy(trainer_cfg, {"timeout_s": 60})},
                        logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert (trainer.global_rank, trainer.world_size, trainer.node_rank, trainer.local_rank) == (rank, 4, 1, 1)
    build = _setup_datamodule(trainer)
    assert build.calls == [("train_ds", rank, 4, 5), ("validation_ds", rank, 4, 5)]


def test_a_single_process_builds_rank_0_of_1(clean_env):
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    assert _setup_datamodule(trainer).calls[0] == ("train_ds", 0, 1, 5)


def test_strategy_names_become_lightning_strategies_with_the_timeout():
    from datetime import timedelta

    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    ddp = build_strategy({"strategy": "auto", "devices": 2}, {"timeout_s": 42})
    assert isinstance(ddp, DDPStrategy) and ddp._timeout == timedelta(seconds=42)
    assert build_strategy({"strategy": "auto", "devices": 1}, {}) == "auto"
    assert build_strategy({"strategy": "ddp_spawn", "devices": 2}, {}) == "ddp_spawn"
    fsdp = build_strategy({"strategy": "fsdp", "devices": 2},
                          {"fsdp": {"sharding_strategy": "SHARD_GRAD_OP", "state_dict_type": "full"}})
    assert isinstance(fsdp, FSDPStrategy) and fsdp._state_dict_type == "full"  # a subclass on CPU
    with pytest.raises(ValueError, match=r"distributed.fsdp: unknown key\(s\) \['wrap'\]"):
        build_strategy({"strategy": "fsdp"}, {"fsdp": {"wrap": []}})


def test_the_global_batch_is_per_rank_batch_times_ranks_times_accumulation():
    assert "batch_size 8 per rank = 64 utterances per optimizer step" in global_batch_summary(
        {"manifest_filepath": "a.json", "batch_size": 8}, world_size=4, accumulate=2)
    lhotse = global_batch_summary({"use_lhotse": True, "manifest_filepath": "a.json", "batch_duration": 600,
                                   "batch_size": None}, world_size=8, accumulate=1)
    assert "batch_duration 600 s per rank = 4800 s of audio per optimizer step" in lhotse


def test_waiting_for_rank_0_fails_with_the_file_named(tmp_path):
    with pytest.raises(TimeoutError, match=r"rank 0 to write .*tokenizer.model \(the tokenizer\)"):
        wait_for_file(tmp_path / "tokenizer.model", timeout_s=0.3, what="the tokenizer", poll_s=0.05)
    (tmp_path / "ready").write_text("")
    wait_for_file(tmp_path / "ready", timeout_s=0.1)


def test_the_gathered_fsdp_weights_become_the_exported_model_without_a_second_copy(tmp_path):
    """Rank 0's model for the .nemo is built on the meta device and takes the gathered tensors
    themselves; buffers outside the state dict (the relative-position table) are built as usual."""
    import torch

    from myna.interop.adapter import build_model
    from myna.text import train_sentencepiece
    from myna.training.distributed import _model_holding

    tok = train_sentencepiece(["one two three", "four five six"] * 20, tmp_path / "tok", vocab_size=16)
    cfg = {"preprocessor": {"features": 16, "n_fft": 256, "window_size": 0.016, "window_stride": 0.01, "pad_to": 0},
           "encoder": {"_target_": "ConformerEncoder", "feat_in": 16, "n_layers": 1, "d_model": 16, "n_heads": 2,
                       "conv_kernel_size": 3},
           "decoder": {"_target_": "ConvASRDecoder"}}
    torch.manual_seed(0)
    trained = build_model(cfg, tok).eval()
    gathered = {k: v.clone() for k, v in trained.state_dict().items()}
    model = _model_holding(gathered, lambda: build_model(cfg, tok)).eval()
    assert all(p.data_ptr() == gathered[k].data_ptr() for k, p in model.state_dict().items() if p.numel())
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    audio = torch.randn(1, 8000)
    with torch.no_grad():
        expected = trained.encoder(*trained.featurize(audio, torch.tensor([8000])))[0]
        got = model.encoder(*model.featurize(audio, torch.tensor([8000])))[0]
    assert torch.allclose(got, expected)
