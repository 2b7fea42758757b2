"""The Transducer trains under Hugging Face's Trainer from a datasets.Dataset with an Audio column."""

import importlib.util
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

datasets = pytest.importorskip("datasets")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # the Trainer needs it (transformers[torch])

import myna  # noqa: E402

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _example_module():
    spec = importlib.util.spec_from_file_location("finetune_hf_datasets", REPO / "examples" / "finetune_hf_datasets.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _local_dataset(tmp_path, texts, seconds):
    """WAV files at 8 kHz (the model resamples to 16 kHz) in a Dataset with an undecoded Audio column."""
    rng = np.random.default_rng(0)
    paths = []
    for i, duration in enumerate(seconds):
        t = np.arange(int(8000 * duration)) / 8000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.01 * rng.standard_normal(t.size)
        path = tmp_path / f"utt{i}.wav"
        sf.write(path, wave.astype(np.float32), 8000)
        paths.append(str(path))
    table = datasets.Dataset.from_dict({"audio": paths, "text": texts})
    return table.cast_column("audio", datasets.Audio(sampling_rate=8000, decode=False))


def test_collated_batch_is_forward_kwargs_and_loss_comes_back(nemo_fixtures, tmp_path):
    example = _example_module()
    model = myna.load(nemo_fixtures / "conformer_rnnt_bpe.nemo")
    data, dropped = example.prepare(_local_dataset(tmp_path, ["the quick brown fox", "hello world"], [1.0, 0.6]),
                                    model.tokenizer, sample_rate=16000)
    batch = example.collate([data[0], data[1]])
    assert dropped == 0
    assert batch["audio"].shape == (2, 16000) and batch["audio_lengths"].tolist() == [16000, 9600]
    assert batch["token_lengths"].tolist() == [len(model.tokenizer.encode(t)) for t in ["the quick brown fox",
                                                                                         "hello world"]]
    out = model(**batch)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])


def test_max_duration_drops_and_counts_long_rows(nemo_fixtures, tmp_path):
    example = _example_module()
    model = myna.load(nemo_fixtures / "conformer_rnnt_bpe.nemo")
    data, dropped = example.prepare(_local_dataset(tmp_path, ["a", "b", "c"], [0.5, 2.5, 1.0]), model.tokenizer,
                                    sample_rate=16000, max_duration=2.0)
    assert dropped == 1 and len(data) == 2


def test_hf_trainer_fine_tunes_fixture_model_and_loss_falls(nemo_fixtures, tmp_path):
    example = _example_module()
    model = myna.load(nemo_fixtures / "conformer_rnnt_bpe.nemo")
    texts = ["hello world", "the quick brown fox", "the bird", "teach the child"]
    data, _ = example.prepare(_local_dataset(tmp_path, texts, [0.8, 1.0, 0.6, 0.9]), model.tokenizer, 16000)
    torch.manual_seed(0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = example.finetune(model, data, str(tmp_path / "run"), max_steps=6, batch_size=4, lr=3e-3,
                               seed=0, disable_tqdm=True)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    assert not model.training
