"""Lhotse dynamic batching over NeMo data: lazy sources, input_cfg weights and tags, seeds, bins."""

import json
from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from myna.cli import main as cli_main
from myna.data.factory import build_loader
from myna.data.lhotse_io import (
    CutSet,
    LazyNeMoIterator,
    LazyNeMoTarredIterator,
    estimate_duration_bins,
    flatten_input_cfg,
    read_cutset_from_config,
)
from myna.data.manifest import ManifestError
from myna.data.tarred import write_tarred_dataset

SR = 8000


class CharTokenizer:
    def encode(self, text):
        return [ord(c) % 64 for c in text]


def make_manifest(root: Path, name: str, n: int, seed: int = 0, lang: str = "en") -> str:
    rng = np.random.default_rng(seed)
    (root / name).mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        samples = int(SR * (0.05 + 0.3 * rng.random()))
        path = root / name / f"{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(samples)).astype(np.float32), SR, subtype="PCM_16")
        lines.append(json.dumps({"audio_filepath": f"{name}/{i}.wav", "duration": samples / SR,
                                 "text": f"{name} {i}", "lang": lang}))
    manifest = root / f"{name}.json"
    manifest.write_text("\n".join(lines) + "\n")
    return str(manifest)


@pytest.fixture
def manifest(tmp_path):
    return make_manifest(tmp_path, "a", 20)


def test_nemo_manifest_is_a_lazy_cut_source(manifest):
    cuts = CutSet(LazyNeMoIterator(manifest, sample_rate=SR))
    assert cuts.is_lazy
    first = next(iter(cuts))
    assert first.supervisions[0].text == "a 0" and first.supervisions[0].language == "en"
    assert len(list(cuts)) == 20


def test_dynamic_batches_respect_batch_duration_and_yield_myna_batches(manifest):
    cfg = {"use_lhotse": True, "manifest_filepath": manifest, "sample_rate": SR, "batch_duration": 1.0,
           "use_bucketing": True, "num_buckets": 2, "shuffle": True, "seed": 1, "shard_seed": 1,
           "force_finite": True}
    loader = build_loader(cfg, CharTokenizer(), train=True, seed=0, name="train_ds")
    batches = list(loader)
    assert sum(b["audio"].shape[0] for b in batches) == 20
    for b in batches:
        assert b["audio_lengths"].sum().item() / SR <= 1.0 + 1e-6
        assert set(b) >= {"audio", "audio_lengths", "tokens", "token_lengths"}


def test_seeds_reproduce_the_batch_order(manifest):
    cfg = {"use_lhotse": True, "manifest_filepath": manifest, "sample_rate": SR, "batch_duration": 0.8,
           "use_bucketing": True, "num_buckets": 2, "shuffle": True, "seed": 5, "shard_seed": 5, "force_finite": True}

    def lengths(seed):
        loader = build_loader({**cfg, "seed": seed}, None, train=True, seed=0, name="t")
        return [b["audio_lengths"].tolist() for b in loader]

    assert lengths(5) == lengths(5)
    assert lengths(5) != lengths(6)


def test_training_iterates_forever_until_limit_train_batches(manifest):
    cfg = {"use_lhotse": True, "manifest_filepath": manifest, "sample_rate": SR, "batch_size": 4, "shuffle": True}
    loader = build_loader(cfg, None, train=True, seed=0, name="t")
    assert len(list(islice(loader, 15))) == 15  # 20 utterances / 4 = 5 batches per pass; no end


def test_input_cfg_weights_multiply_through_groups():
    leaves = flatten_input_cfg([
        {"type": "nemo", "manifest_filepath": "x.json", "weight": 1.0, "tags": {"lang": "en"}},
        {"type": "group", "weight": 3.0, "tags": {"lang": "de"}, "input_cfg": [
            {"type": "nemo", "manifest_filepath": "y.json", "weight": 2.0},
            {"type": "nemo", "manifest_filepath": "z.json", "weight": 1.0, "tags": {"src": "z"}},
        ]},
    ])
    assert [round(leaf.weight, 4) for leaf in leaves] == [0.25, 0.5, 0.25]
    assert [leaf.tags for leaf in leaves] == [{"lang": "en"}, {"lang": "de"}, {"lang": "de", "src": "z"}]
    assert [leaf.manifest_filepath for leaf in leaves] == ["x.json", "y.json", "z.json"]


def test_weighted_sources_are_sampled_in_proportion_and_tagged(tmp_path):
    a, b, c = (make_manifest(tmp_path, n, 5, seed=i) for i, n in enumerate("abc"))
    cfg = {"shard_seed": 0, "sample_rate": SR, "input_cfg": [
        {"type": "nemo", "manifest_filepath": a, "weight": 0.5, "tags": {"src": "a"}},
        {"type": "group", "weight": 0.5, "input_cfg": [
            {"type": "nemo", "manifest_filepath": b, "weight": 3, "tags": {"src": "b"}},
            {"type": "nemo", "manifest_filepath": c, "weight": 1, "tags": {"src": "c"}},
        ]},
    ]}
    cuts, streaming = read_cutset_from_config(cfg, infinite=True)
    assert not streaming
    counts = Counter(cut.custom["tags"]["src"] for cut in islice(cuts, 4000))
    for src, p in {"a": 0.5, "b": 0.375, "c": 0.125}.items():
        assert abs(counts[src] / 4000 - p) < 0.03, counts
    loader = build_loader({**cfg, "use_lhotse": True, "batch_size": 4}, None, train=True, seed=0, name="t")
    batch = next(iter(loader))
    assert len(batch["tags"]) == batch["audio"].shape[0] and all(t["src"] in "abc" for t in batch["tags"])


def test_nemo_tarred_data_is_a_lhotse_source(tmp_path, manifest):
    write_tarred_dataset(manifest, tmp_path / "t", num_shards=4)
    cfg = {"use_lhotse": True, "is_tarred": True, "sample_rate": SR, "batch_size": 3, "shuffle": True,
           "manifest_filepath": str(tmp_path / "t" / "sharded_manifests" / "manifest__OP_0..3_CL_.json"),
           "tarred_audio_filepaths": str(tmp_path / "t" / "audio__OP_0..3_CL_.tar"), "shard_seed": 2,
           "force_finite": True}
    loader = build_loader(cfg, CharTokenizer(), train=True, seed=0, name="t")
    texts = sorted(bytes(64 + x for x in row[:n]).decode()
                   for b in loader for row, n in zip(b["tokens"].tolist(), b["token_lengths"].tolist()))
    expected = sorted(bytes(64 + x for x in CharTokenizer().encode(f"a {i}")).decode() for i in range(20))
    assert texts == expected


def test_cuts_path_source_loads_and_resamples(tmp_path, manifest):
    from lhotse import Recording

    rec = Recording.from_file(Path(manifest).parent / "a" / "0.wav")
    cutset = CutSet.from_cuts([rec.to_cut()])
    cutset.to_file(tmp_path / "cuts.jsonl.gz")
    loader = build_loader({"use_lhotse": True, "cuts_path": str(tmp_path / "cuts.jsonl.gz"), "sample_rate": 16000,
                           "batch_size": 2, "force_finite": True}, None, train=True, seed=0, name="t")
    [batch] = list(loader)
    assert batch["audio_lengths"].item() == round(rec.duration * 16000)


def test_estimate_bins_plain_and_weighted(tmp_path, capsys):
    a, b = make_manifest(tmp_path, "a", 40, seed=1), make_manifest(tmp_path, "b", 40, seed=2)
    bins = estimate_duration_bins(a, num_buckets=4)
    assert len(bins) == 3 and bins == sorted(bins)
    assert cli_main(["data", "estimate-bins", "-b", "4", f"[[{a},0.7],[{b},0.3]]"]) == 0
    out = capsys.readouterr().out
    assert "num_buckets=4" in out
    line = next(x for x in out.splitlines() if x.startswith("bucket_duration_bins="))
    assert len(json.loads(line.split("=", 1)[1])) == 3


def test_estimate_bins_padding_method_from_the_cli(tmp_path, capsys):
    a = make_manifest(tmp_path, "a", 40, seed=1)
    assert cli_main(["data", "estimate-bins", "-b", "4", "--method", "padding", str(a)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("bucket_duration_bins="))
    bins = json.loads(line.split("=", 1)[1])
    assert 1 <= len(bins) <= 3 and bins == sorted(bins)


def test_bad_manifest_lines_name_file_and_line_in_the_lazy_readers(tmp_path, manifest):
    bad = tmp_path / "bad.json"
    lines = Path(manifest).read_text().splitlines()
    bad.write_text("\n".join(lines[:2] + ['["a list"]'] + lines[2:]) + "\n")
    with pytest.raises(ManifestError, match=r"bad\.json:3: expected a JSON object"):
        list(CutSet(LazyNeMoIterator(bad, sample_rate=SR)))
    write_tarred_dataset(manifest, tmp_path / "t", num_shards=1)
    tarred_manifest = tmp_path / "t" / "tarred_audio_manifest.json"
    text = tarred_manifest.read_text().splitlines()
    text[4] = text[4].replace('"duration"', '"length"')
    tarred_manifest.write_text("\n".join(text) + "\n")
    source = LazyNeMoTarredIterator(str(tarred_manifest), str(tmp_path / "t" / "audio_0.tar"))
    with pytest.raises(ManifestError, match=r"tarred_audio_manifest\.json:5: missing required key 'duration'"):
        list(source)


def test_lhotse_tarred_source_counts_the_utterances_a_shard_lost(tmp_path, manifest, caplog):
    from myna.data.lhotse_io import LazyNeMoTarredIterator

    write_tarred_dataset(manifest, tmp_path / "t", num_shards=2)
    shard = tmp_path / "t" / "audio_1.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # cut in the middle: the rest of its members are lost
    source = LazyNeMoTarredIterator(str(tmp_path / "t" / "tarred_audio_manifest.json"),
                                    str(tmp_path / "t" / "audio__OP_0..1_CL_.tar"))
    cuts = list(source)
    assert len(cuts) + source.unread == 20  # every utterance is read or counted lost
    assert source.unread > 0 and "were never read" in caplog.text
