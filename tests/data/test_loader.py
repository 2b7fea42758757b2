"""myna.data.loader: dataset items, collation, batch order, utterance-named errors."""

import numpy as np
import pytest
import soundfile as sf
import torch

from myna.audio import AudioError
from myna.data.loader import (
    AudioToTextDataset,
    build_dataloader,
    collate_audio_text,
)
from myna.data.manifest import read_manifest, write_manifest
from myna.data.sampling import DistributedBatchSampler


class CharTokenizer:
    def encode(self, text):
        return [ord(c) - ord("a") + 1 for c in text.replace(" ", "")]


def _corpus(tmp_path, durations=(0.5, 0.25, 1.0), rate=8000):
    rows = []
    for i, d in enumerate(durations):
        path = tmp_path / f"{i}.wav"
        sf.write(path, np.full(int(d * rate), 0.1 * (i + 1), dtype=np.float32), rate)
        rows.append({"audio_filepath": path.name, "duration": d, "text": "ab" * (i + 1)})
    return read_manifest(write_manifest(rows, tmp_path / "m.json"))


def test_dataset_item_has_audio_tokens_index(tmp_path):
    ds = AudioToTextDataset(_corpus(tmp_path), CharTokenizer(), sample_rate=16000)
    item = ds[1]
    assert item["audio"].dtype == torch.float32 and abs(item["audio"].shape[0] - 4000) <= 1
    assert item["tokens"].dtype == torch.int64 and item["tokens"].tolist() == [1, 2, 1, 2]
    assert item["index"] == 1 and ds.token_lengths == [2, 4, 6]


def test_dataset_reads_offset_segment(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.arange(8000, dtype=np.float32) / 8000, 8000, subtype="FLOAT")
    entries = read_manifest(write_manifest(
        [{"audio_filepath": "long.wav", "offset": 0.5, "duration": 0.25, "text": "a"}],
        tmp_path / "m.json"))
    audio = AudioToTextDataset(entries, None, 8000)[0]["audio"]
    assert audio.shape == (2000,) and audio[0].item() == pytest.approx(0.5)


def test_collate_pads_audio_and_tokens_with_zeros(tmp_path):
    ds = AudioToTextDataset(_corpus(tmp_path), CharTokenizer(), sample_rate=8000)
    batch = collate_audio_text([ds[0], ds[1], ds[2]])
    assert batch["audio"].shape == (3, 8000) and batch["tokens"].shape == (3, 6)
    assert batch["audio_lengths"].tolist() == [4000, 2000, 8000]
    assert batch["token_lengths"].tolist() == [2, 4, 6]
    assert batch["indices"].tolist() == [0, 1, 2]
    assert torch.all(batch["audio"][1, 2000:] == 0) and torch.all(batch["tokens"][0, 2:] == 0)
    assert batch["audio"].dtype == torch.float32 and batch["tokens"].dtype == torch.int64


def test_missing_audio_error_names_utterance(tmp_path):
    entries = _corpus(tmp_path)
    (tmp_path / "2.wav").unlink()
    ds = AudioToTextDataset(entries, CharTokenizer(), 8000)
    with pytest.raises(AudioError, match=r"m\.json:3: audio file not found: .*2\.wav"):
        ds[2]


def test_empty_audio_error_names_utterance(tmp_path):
    entries = _corpus(tmp_path)
    sf.write(tmp_path / "0.wav", np.zeros(0, dtype=np.float32), 8000)
    with pytest.raises(AudioError, match=r"m\.json:1: audio file .*0\.wav is empty"):
        AudioToTextDataset(entries, CharTokenizer(), 8000)[0]


def test_no_shuffle_keeps_manifest_order():
    assert list(DistributedBatchSampler([1.0] * 5, 2, shuffle=False)) == [[0, 1], [2, 3], [4]]


def test_build_dataloader_yields_padded_batches(tmp_path):
    loader = build_dataloader(_corpus(tmp_path), CharTokenizer(), 16000, batch_size=2,
                              shuffle=True, seed=0)
    batches = list(loader)
    assert len(batches) == 2 == len(loader)
    assert sorted(i for b in batches for i in b["indices"].tolist()) == [0, 1, 2]
    for b in batches:
        assert b["audio"].shape[1] == b["audio_lengths"].max()
        assert b["tokens"].shape[1] == b["token_lengths"].max()
