"""Pre-training under Lightning: what is logged and plotted, and short utterances caught early."""

import csv

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from myna.data.manifest import ManifestEntry
from myna.interop.adapter import build_model
from myna.training.plots import plot_pretraining_curve
from myna.training.pretraining import PretrainingTask, check_durations

TINY = {
    "target": "myna.Wav2Vec2PreTrainingModel",
    "encoder": {"_target_": "myna.Wav2Vec2Encoder", "hidden_size": 32, "num_layers": 1, "num_heads": 4,
                "intermediate_size": 64, "conv_dim": [16] * 7, "pos_conv_kernel": 8, "pos_conv_groups": 4},
    "quantizer": {"num_vars": 8, "groups": 2, "vq_dim": 16}, "final_dim": 16,
    "masking": {"mask_prob": 0.5, "mask_length": 3}, "contrastive": {"num_negatives": 4},
}


def _batches(n, rows=2, samples=6000):
    gen = torch.Generator().manual_seed(0)
    return DataLoader([{"audio": torch.randn(rows, samples, generator=gen), "audio_lengths": torch.tensor([samples, samples - 800]),
             "indices": torch.tensor([2 * i, 2 * i + 1])} for i in range(n)], batch_size=None)


def test_fit_logs_the_ssl_quantities_and_plots_them(tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY, None)
    task = PretrainingTask(model, {"name": "adamw", "lr": 1e-3}, max_steps=4)
    trainer = L.Trainer(max_steps=4, val_check_interval=2, logger=L.pytorch.loggers.CSVLogger(tmp_path, name="logs"),
                        log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
                        num_sanity_val_steps=0, enable_model_summary=False)
    trainer.fit(task, _batches(4), _batches(2))
    metrics = next(tmp_path.glob("logs/*/metrics.csv"))
    header = next(csv.reader(open(metrics)))
    for key in ("train_loss", "train_accuracy", "train_prob_perplexity", "train_code_perplexity", "train_temperature",
                "train_num_masked", "val_loss", "val_accuracy", "lr"):
        assert key in header, key
    temperatures = [float(r["train_temperature"]) for r in csv.DictReader(open(metrics)) if r["train_temperature"]]
    assert temperatures == sorted(temperatures, reverse=True) and temperatures[0] <= 2.0
    png = plot_pretraining_curve([metrics], tmp_path / "curve.png", num_codevectors=16)
    assert png.stat().st_size > 10_000


def test_a_short_row_is_named_by_its_utterance():
    model = build_model(TINY, None)
    task = PretrainingTask(model, {"name": "adamw", "lr": 1e-3}, max_steps=1, describe_rows=lambda i: f"train.json:{i + 1}")
    batch = next(iter(_batches(1)))
    batch["audio_lengths"] = torch.tensor([6000, 500])
    with pytest.raises(ValueError, match=r"utterance\(s\): train.json:2"):
        task._forward(batch)


def test_check_durations_names_short_utterances_and_the_filter():
    entries = [ManifestEntry("a.wav", 1.0, manifest="m.json", line=1),
               ManifestEntry("b.wav", 0.05, manifest="m.json", line=2)]
    check_durations(entries[:1], 0.1, "model.train_ds", None)
    with pytest.raises(ValueError, match=r"1 utterance\(s\) are shorter than 0.1000 s.*m.json:2 \(0.050 s\).*"
                                         r"model.train_ds.min_duration=0.1000"):
        check_durations(entries, 0.1, "model.train_ds", None)
