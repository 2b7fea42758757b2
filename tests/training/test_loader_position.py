"""myna.training.loader_position: a Lightning run stopped after a checkpoint and resumed from it
trains on the same batches, in the same order, as a run never stopped.

The loader position travels in Lightning's own checkpoint. Cases: a sized loader (plain manifest
batches), the same with Lightning's epoch shorter than the loader's (``limit_train_batches``) and
the stop exactly at an epoch end, and an endless Lhotse loader, in epochs of
``limit_train_batches`` or in one endless epoch (where Lightning reads one batch ahead).
"""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from myna.data.factory import build_loader
from myna.training.interrupt import CheckpointOnInterrupt
from myna.training.loader_position import LoaderPosition


class Recorder(L.LightningModule):
    """Records the utterance ids of every batch it trains on."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[str]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(list(batch["ids"]))
        return ((self.weight - batch["audio"].mean()) ** 2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Stop(Exception):
    pass


class StopAtStep(L.Callback):
    """Ends the run (as a kill would) as step ``step`` starts, after the checkpoint of the step before."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Stop


def fit(section, ckpt_dir, max_steps, limit, stop_at=None, resume=False, every=1) -> list[list[str]]:
    loader = build_loader(section, None, train=True, seed=7, name="train_ds")
    model = Recorder()
    callbacks = [LoaderPosition(), ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=every, save_last=True),
                 CheckpointOnInterrupt(ckpt_dir / "last.ckpt")]  # as myna train: it writes the final step's
    if stop_at is not None:
        callbacks.append(StopAtStep(stop_at))
    trainer = L.Trainer(max_steps=max_steps, limit_train_batches=limit, callbacks=callbacks, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        accelerator="cpu", use_distributed_sampler=False)
    try:
        trainer.fit(model, train_dataloaders=loader, ckpt_path=str(ckpt_dir / "last.ckpt") if resume else None)
    except Stop:
        pass
    return model.seen


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, wav_manifest):
    return wav_manifest(tmp_path_factory.mktemp("lightning"), "train", 14, seed=4)


CASES = {
    # name: (section keys, max_steps, limit_train_batches, step at which the run is stopped)
    "sized-mid-epoch": ({"batch_size": 3}, 8, 1.0, 3),
    "sized-limited-epoch-end": ({"batch_size": 3}, 7, 3, 3),
    "sized-epoch-end": ({"batch_size": 3}, 8, 1.0, 5),  # 14 utterances: the checkpoint at the last of 5 batches
    "endless-lhotse-read-ahead": ({"use_lhotse": True, "batch_duration": 0.5, "batch_size": None, "seed": 2,
                                   "shuffle_buffer_size": 8}, 7, 1.0, 3),
    "endless-lhotse-mid-epoch": ({"use_lhotse": True, "batch_duration": 0.5, "batch_size": None, "seed": 2, "shuffle_buffer_size": 8}, 7, 3, 2),
    "endless-lhotse-epoch-end": ({"use_lhotse": True, "batch_duration": 0.5, "batch_size": None, "seed": 2, "shuffle_buffer_size": 8}, 7, 3, 3),
}


@pytest.mark.parametrize("case", CASES)
def test_run_stopped_and_resumed_trains_on_the_same_batches(tmp_path, manifest, case):
    keys, max_steps, limit, stop = CASES[case]
    section = {"manifest_filepath": manifest, "sample_rate": 8000, "shuffle": True, **keys}
    expected = fit(section, tmp_path / "whole", max_steps, limit)
    assert len(expected) == max_steps
    before = fit(section, tmp_path / "stopped", max_steps, limit, stop_at=stop)
    assert len(before) == stop
    after = fit(section, tmp_path / "stopped", max_steps, limit, resume=True)
    assert before + after == expected


def test_a_run_that_ended_on_an_epochs_last_batch_continues_with_the_next_epochs_batches(tmp_path, manifest):
    """max_steps reached on the last of an epoch's 5 batches (14 utterances, batch 3), no periodic
    checkpoint at that step; the run continued with a larger max_steps trains on what a run never
    stopped trains on."""
    section = {"manifest_filepath": manifest, "sample_rate": 8000, "shuffle": True, "batch_size": 3}
    expected = fit(section, tmp_path / "whole", 8, 1.0, every=3)
    before = fit(section, tmp_path / "stopped", 5, 1.0, every=3)
    after = fit(section, tmp_path / "stopped", 8, 1.0, resume=True, every=3)
    assert len(before) == 5 and before + after == expected
