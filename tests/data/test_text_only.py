"""myna.data.text_only: NeMo text-only records, Lhotse text sources, mixing and token budgets."""

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from myna.data.text_only import (
    LhotseTextSource,
    MixedDataset,
    MultimodalConstraint,
    TextToSpeechDataset,
    collate_mixed,
    filter_by_words,
    mix_indices,
    read_text_lines,
    read_text_pairs,
    read_text_records,
)


class Chars:
    def encode(self, text):
        return [ord(c) % 50 for c in text]


class FakeTTS:
    """0.1 s of a constant per word at 16 kHz; remembers its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, text, speaker=None, key=None):
        self.calls.append((text, speaker, key))
        return torch.full((1600 * len(text.split()),), 0.1)


def _write(path, lines):
    path.write_text("".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines))
    return path


def test_records_take_the_tts_text_nemo_prefers(tmp_path):
    path = _write(tmp_path / "t.json", [{"text": "one two", "tts_text_normalized": "one two!", "tts_text": "1 2"},
                                        {"text": "three", "tts_text": "3"}, {"text": "four"}])
    records = read_text_records(path)
    assert [(r.text, r.tts_text) for r in records] == [("one two", "one two!"), ("three", "3"), ("four", "four")]
    assert records[1].where == f"{path}:2"


@pytest.mark.parametrize("line, message", [
    ("{bad", r"t.json:2: malformed JSON"),
    ('{"tts_text": "x"}', r"t.json:2: missing or non-string 'text'"),
    ('{"text": "x", "tts_text": 3}', r"t.json:2: 'tts_text' / 'tts_text_normalized' must be a string"),
])
def test_bad_records_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "t.json", [{"text": "ok"}, line])
    with pytest.raises(ValueError, match=message):
        read_text_records(path)


def test_word_filter_counts_what_it_drops(tmp_path, caplog):
    path = _write(tmp_path / "t.txt", ["one", "", "one two three", "x " * 50])
    records = read_text_lines(path)
    assert len(records) == 3  # the blank line is no text
    with caplog.at_level("WARNING", logger="myna.data"):
        kept, report = filter_by_words(records, min_words=2, max_words=45, name="text_data")
    assert [r.text for r in kept] == ["one two three"]
    assert report.dropped == {"< 2 words": (1, 1), "> 45 words": (1, 50)}
    assert "text_data: kept 1 of 3 text records" in caplog.text


def test_text_pairs_read_line_by_line_and_must_match(tmp_path):
    src = _write(tmp_path / "src.txt", ["3 1", "4"])
    tgt = _write(tmp_path / "tgt.txt", ["three one", "four"])
    pairs = read_text_pairs(src, tgt)
    assert [(r.tts_text, r.text) for r in pairs] == [("3 1", "three one"), ("4", "four")]
    _write(tmp_path / "short.txt", ["three one"])
    with pytest.raises(ValueError, match=r"src.txt has 2 lines but .*short.txt has 1"):
        read_text_pairs(src, tmp_path / "short.txt")


def test_round_robin_alternates_until_the_largest_is_used_up():
    pairs = mix_indices([5, 2], "round-robin", seed=0)
    assert len(pairs) == 10 and [d for d, _ in pairs] == [0, 1] * 5
    assert sorted(i for d, i in pairs if d == 0) == [0, 1, 2, 3, 4]


def test_temperature_and_random_draw_in_proportion():
    pairs = mix_indices([900, 100], "temperature", temperature=1.0, seed=0)
    counts = Counter(d for d, _ in pairs)
    assert abs(counts[1] / len(pairs) - 0.1) < 0.03  # T=1: proportional to size
    flat = Counter(d for d, _ in mix_indices([900, 100], "temperature", temperature=1e6, seed=0))
    assert abs(flat[1] / sum(flat.values()) - 0.5) < 0.05  # T->inf: uniform over datasets
    rnd = Counter(d for d, _ in mix_indices([50, 50], "random", probabilities=[0.8, 0.2], seed=1))
    assert rnd[0] > 3 * rnd[1]
    with pytest.raises(ValueError, match="needs 2 probabilities"):
        mix_indices([5, 5], "random")
    with pytest.raises(ValueError, match="must be one of"):
        mix_indices([5, 5], "fair")


def test_mixed_dataset_marks_synthetic_items_and_collates_the_flag(tmp_path):
    audio = [{"audio": torch.zeros(800), "tokens": torch.tensor([1, 2]), "index": i} for i in range(4)]
    tts = FakeTTS()
    text = TextToSpeechDataset(read_text_lines(_write(tmp_path / "t.txt", ["one two", "three"])), Chars(), tts,
                               speakers=[7, 9], seed=1)
    mixed = MixedDataset([audio, text], technique="round-robin", seed=0)
    items = [mixed[i] for i in range(len(mixed))]
    assert [it["synthetic"] for it in items] == [False, True] * 4
    assert [it["index"] for it in items] == list(range(8))
    batch = collate_mixed(items[:3])
    assert batch["synthetic"].tolist() == [False, True, False] and batch["audio"].shape[0] == 3
    speakers = {s for _, s, _ in tts.calls}
    assert speakers <= {7, 9} and all(k.startswith(str(tmp_path / "t.txt")) for _, _, k in tts.calls)
    assert text.speaker_of(0) == text.speaker_of(0)


def test_multimodal_constraint_measures_audio_and_text_in_tokens():
    from lhotse import MonoCut
    from lhotse.cut.text import TextExample

    c = MultimodalConstraint.from_nemo(token_equivalent_duration=0.08, batch_tokens=100, quadratic_factor=None)
    cut = MonoCut(id="c", start=0, duration=1.0, channel=0)
    assert c.measure_length(cut) == math.ceil(1.0 / 0.08) == 13
    assert c.measure_length(TextExample("a b", tokens=np.arange(7))) == 7
    for _ in range(7):
        c.add(cut)
    assert not c.exceeded() and c.close_to_exceeding()  # 7 x 13 = 91; an 8th would make 104
    c.add(cut)
    assert c.exceeded()
    q = MultimodalConstraint.from_nemo(0.08, batch_tokens=1000, quadratic_factor=13)
    q.add(cut)
    assert q.current == 13 + 13 ** 2 / 13
    with pytest.raises(ValueError, match="token_equivalent_duration"):
        MultimodalConstraint.from_nemo(None, batch_tokens=10)


def test_lhotse_text_source_yields_tokenized_examples_with_tags(tmp_path):
    from lhotse.cut.text import TextExample, TextPairExample

    records = read_text_lines(_write(tmp_path / "a.txt", ["one two"])) + read_text_pairs(
        _write(tmp_path / "s.txt", ["3"]), _write(tmp_path / "t.txt", ["three"]))
    examples = list(LhotseTextSource(records, Chars(), tags={"domain": "text"}))
    assert isinstance(examples[0], TextExample) and isinstance(examples[1], TextPairExample)
    assert examples[0].tokens.tolist() == Chars().encode("one two") and examples[0].num_tokens == 7
    assert examples[1].custom["tts_text"] == "3" and examples[1].target.text == "three"
    assert examples[1].custom["tags"] == {"domain": "text"} and examples[1].custom["synthetic"]


def test_text_data_section_builds_a_synthesised_dataset_with_nemo_defaults(tmp_path, monkeypatch):
    from myna.data import tts as tts_module
    from myna.data.text_only import build_text_dataset

    monkeypatch.setitem(tts_module.TTS_BACKENDS, "fake", lambda **options: FakeTTSBackend(**options))
    records = _write(tmp_path / "t.json", [{"text": "one two"}, {"text": "w " * 46}, {"text": "three"}])
    (tmp_path / "spk.txt").write_text("4 5\n")
    section = {"manifest_filepath": str(records), "speakers_filepath": str(tmp_path / "spk.txt"),
               "tokenizer_workers": 4, "tts": {"backend": "fake", "gain": 0.5, "cache_dir": str(tmp_path / "c")}}
    dataset, mix = build_text_dataset(section, Chars(), sample_rate=16000, seed=3)
    assert len(dataset) == 2 and dataset.speakers == [4, 5]  # max_words 45 dropped one
    assert mix == {"technique": "temperature", "temperature": 5.0, "probabilities": None}
    item = dataset[0]
    assert item["synthetic"] and item["audio"].shape == (3200,)  # 2 words x 0.1 s, 8 kHz -> 16 kHz
    assert float(item["audio"][1600]) == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError, match=r"model.train_ds.text_data: unknown key\(s\) \['max_word'\]"):
        build_text_dataset({**section, "max_word": 3}, Chars(), 16000)
    with pytest.raises(ValueError, match=r"text_data.tts.backend='fastpitch' is not a TTS backend"):
        build_text_dataset({**section, "tts": {"backend": "fastpitch"}}, Chars(), 16000)


class FakeTTSBackend:
    sample_rate = 8000

    def __init__(self, gain=1.0):
        self.gain = gain

    def __call__(self, text, speaker=None):
        assert speaker in (4, 5)
        return np.full(800 * len(text.split()), self.gain, dtype=np.float32)


def test_lhotse_input_cfg_mixes_audio_and_text_sources_into_token_budgeted_batches(tmp_path, monkeypatch):
    """input_cfg with a NeMo manifest and txt / txt_pair sources, multimodal sampling: every batch
    fits the token budget, text examples arrive spoken and flagged synthetic."""
    from pathlib import Path

    from myna.data import tts as tts_module
    from myna.data.factory import build_loader

    repo = Path(__file__).resolve().parents[2]
    corpus = repo / "data" / "espeak_digits"
    rows = [json.loads(line) for line in (corpus / "train.json").read_text().splitlines()[:20]]
    for row in rows:
        row["audio_filepath"] = str(corpus / row["audio_filepath"])
    manifest = _write(tmp_path / "audio.json", rows)
    texts = _write(tmp_path / "t.txt", ["one two three", "four", "five six"] * 10)
    src, tgt = _write(tmp_path / "s.txt", ["7 8"] * 10), _write(tmp_path / "g.txt", ["seven eight"] * 10)
    monkeypatch.setitem(tts_module.TTS_BACKENDS, "fake", lambda: (lambda text: (np.full(800, 0.1), 8000)))
    section = {"use_lhotse": True, "use_multimodal_sampling": True, "token_equivalent_duration": 0.08,
               "batch_tokens": 200, "batch_size": None, "shuffle": True, "seed": 5, "shard_seed": 5,
               "sample_rate": 16000, "tts": {"backend": "fake", "cache_dir": False},
               "input_cfg": [{"type": "nemo", "manifest_filepath": str(manifest), "weight": 0.5},
                             {"type": "txt", "paths": str(texts), "weight": 0.3, "tags": {"src": "txt"}},
                             {"type": "txt_pair", "source_paths": str(src), "target_paths": str(tgt),
                              "weight": 0.2}]}
    loader = build_loader(section, Chars(), train=True, seed=0, name="train_ds")
    batches = [b for _, b in zip(range(12), loader)]
    synthetic = torch.cat([b.get("synthetic", torch.zeros(b["audio"].shape[0], dtype=torch.bool)) for b in batches])
    assert 0 < int(synthetic.sum()) < len(synthetic)  # both kinds arrive
    for batch in batches:
        real = ~batch.get("synthetic", torch.zeros(batch["audio"].shape[0], dtype=torch.bool))
        sizes = [math.ceil(n / 16000 / 0.08) if r else int(t)
                 for n, t, r in zip(batch["audio_lengths"].tolist(), batch["token_lengths"].tolist(), real.tolist())]
        # Lhotse closes a batch when one more example could exceed the budget, keeping the last one:
        # everything before it fits (examples x longest), and the batch is not far short of it.
        assert (len(sizes) - 1) * max(sizes[:-1], default=0) <= 200 + 2
        assert (len(sizes) + 1) * max(sizes) > 200
        if "synthetic" in batch:
            spoken = batch["audio_lengths"][batch["synthetic"]]
            assert (spoken == 1600).all()  # 0.1 s at 8 kHz, resampled to 16 kHz
    pair_tokens = Chars().encode("seven eight")
    assert any(b["tokens"][i, :len(pair_tokens)].tolist() == pair_tokens for b in batches
               for i in range(b["tokens"].shape[0]))  # txt_pair: the transcript is the target text
