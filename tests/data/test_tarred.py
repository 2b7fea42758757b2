"""NeMo tarred datasets: writing, brace expansion, shard splitting, streaming, corrupt members, DDP."""

import io
import json
import logging
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from torch.utils.data import DataLoader

from myna.audio import load_audio
from myna.cli import main as cli_main
from myna.data.factory import build_loader
from myna.data.loader import collate_audio_text
from myna.data.manifest import ManifestError
from myna.data.tarred import (
    TarMemberIndex,
    TarredAudioDataset,
    brace_expand,
    expand_sharded_filepaths,
    flatten_member_name,
    write_tarred_dataset,
)

SR = 8000


class CharTokenizer:
    def encode(self, text):
        return [ord(c) % 64 for c in text]


def make_corpus(root: Path, n: int = 12, seed: int = 0) -> Path:
    """n tiny wav files (0.05-0.3 s) in root/audio/d1 and a manifest with relative paths."""
    rng = np.random.default_rng(seed)
    (root / "audio" / "d1").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        samples = int(SR * (0.05 + 0.25 * rng.random()))
        path = root / "audio" / "d1" / f"utt{i:02d}.wav"
        sf.write(path, (0.1 * rng.standard_normal(samples)).astype(np.float32), SR, subtype="PCM_16")
        lines.append({"audio_filepath": f"audio/d1/utt{i:02d}.wav", "duration": samples / SR, "text": f"text {i}"})
    manifest = root / "train.json"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path)


def read_lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_round_trip_manifest_tar_read_keeps_audio_bytes_and_texts(corpus, tmp_path):
    out = tmp_path / "tarred"
    [report] = write_tarred_dataset(corpus, out, num_shards=3, shuffle=True, shuffle_seed=7)
    assert report.written == 12 and report.discarded == 0
    for i in range(3):
        assert (out / f"audio_{i}.tar").is_file()
        assert len(read_lines(out / "sharded_manifests" / f"manifest_{i}.json")) == 4
    meta = yaml.safe_load((out / "metadata.yaml").read_text())
    assert meta["num_samples_per_shard"] == 4 and meta["dataset_config"]["num_shards"] == 3
    lines = read_lines(out / "tarred_audio_manifest.json")
    assert sorted(line["text"] for line in lines) == sorted(f"text {i}" for i in range(12))
    assert {line["shard_id"] for line in lines} == {0, 1, 2}
    # members hold the original files byte for byte
    originals = {flatten_member_name(str((corpus.parent / f"audio/d1/utt{i:02d}.wav").resolve())):
                 (corpus.parent / f"audio/d1/utt{i:02d}.wav").read_bytes() for i in range(12)}
    for i in range(3):
        with tarfile.open(out / f"audio_{i}.tar") as tar:
            for member in tar.getmembers():
                assert tar.extractfile(member).read() == originals[member.name]
    ds = TarredAudioDataset(out / "tarred_audio_manifest.json", str(out / "audio__OP_0..2_CL_.tar"),
                            CharTokenizer(), SR)
    seen = {}
    for item in ds:
        entry = ds.entries[item["index"]]
        seen[entry.text] = item
        original = corpus.parent / "audio" / "d1" / entry.audio_filepath.split("_d1_")[1]
        assert torch.equal(item["audio"], load_audio(original, SR))
        assert item["tokens"].tolist() == CharTokenizer().encode(entry.text)
    assert sorted(seen) == sorted(f"text {i}" for i in range(12))


def test_member_names_are_flattened_and_repeated_files_get_sub_suffixes(tmp_path):
    make_corpus(tmp_path, n=2)
    wav = str((tmp_path / "audio" / "d1" / "utt00.wav").resolve())
    assert flatten_member_name("/data/d1/file.wav") == "_data_d1_file.wav"
    assert flatten_member_name("/data/d1/file.v2.wav") == "_data_d1_file_v2.wav"
    manifest = tmp_path / "segments.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": wav, "offset": o, "duration": 0.02, "text": t}) + "\n"
                                for o, t in [(0.0, "a"), (0.02, "b")]))
    write_tarred_dataset(manifest, tmp_path / "t", num_shards=1)
    names = [line["audio_filepath"] for line in read_lines(tmp_path / "t" / "tarred_audio_manifest.json")]
    base = flatten_member_name(wav)
    assert names == [base, base[:-4] + "-sub1.wav"]
    with tarfile.open(tmp_path / "t" / "audio_0.tar") as tar:
        assert tar.getnames() == [base]
    ds = TarredAudioDataset(tmp_path / "t" / "tarred_audio_manifest.json", str(tmp_path / "t" / "audio_0.tar"), None, SR)
    items = list(ds)
    assert [ds.entries[i["index"]].text for i in items] == ["a", "b"]
    assert all(item["audio"].shape[0] == int(0.02 * SR) for item in items)


def test_leftover_entries_are_discarded_and_counted(tmp_path, caplog):
    manifest = make_corpus(tmp_path, n=13)
    with caplog.at_level(logging.WARNING, logger="myna.data"):
        [report] = write_tarred_dataset(manifest, tmp_path / "t", num_shards=4)
    assert (report.written, report.discarded, report.num_samples_per_shard) == (12, 1, 3)
    assert "1 utterance(s) left over" in caplog.text


def test_buckets_num_writes_one_dataset_per_duration_bucket(corpus, tmp_path):
    reports = write_tarred_dataset(corpus, tmp_path / "t", num_shards=1, buckets_num=2,
                                   min_duration=0.05, max_duration=0.3)
    assert [r.target_dir.name for r in reports] == ["bucket1", "bucket2"]
    assert sum(r.written for r in reports) == 12
    short = [line["duration"] for line in read_lines(tmp_path / "t" / "bucket1" / "tarred_audio_manifest.json")]
    long = [line["duration"] for line in read_lines(tmp_path / "t" / "bucket2" / "tarred_audio_manifest.json")]
    assert max(short) < 0.175 <= min(long)


@pytest.mark.parametrize("pattern", ["a/audio_{0..3}.tar", "a/audio__OP_0..3_CL_.tar", "a/audio_(0..3).tar",
                                     "a/audio_[0..3].tar", "a/audio_<0..3>.tar"])
def test_brace_forms_expand_to_the_same_shards(pattern):
    assert expand_sharded_filepaths(pattern) == [f"a/audio_{i}.tar" for i in range(4)]


def test_brace_expansion_handles_lists_padding_and_nesting():
    assert brace_expand("x_{08..10}.tar") == ["x_08.tar", "x_09.tar", "x_10.tar"]
    assert brace_expand("{a,b}/{1..2}") == ["a/1", "a/2", "b/1", "b/2"]
    assert brace_expand("{a,{b,c}}") == ["a", "b", "c"]
    assert brace_expand("plain.tar") == ["plain.tar"]


@pytest.fixture
def eight_shards(tmp_path):
    manifest = make_corpus(tmp_path, n=16)
    write_tarred_dataset(manifest, tmp_path / "t", num_shards=8)
    return tmp_path / "t"


def test_scatter_covers_each_shard_once_and_replicate_once_per_rank_over_2_ranks_2_workers(eight_shards):
    pattern = str(eight_shards / "audio_{0..7}.tar")
    manifest = eight_shards / "tarred_audio_manifest.json"
    for strategy, times in (("scatter", 1), ("replicate", 2)):
        read = []
        for rank in range(2):
            ds = TarredAudioDataset(manifest, pattern, None, SR, shard_strategy=strategy, world_size=2, global_rank=rank)
            for worker in range(2):
                read.extend(ds.worker_shards(worker, 2))
        assert sorted(read) == sorted([str(eight_shards / f"audio_{i}.tar") for i in range(8)] * times)
    # a real 2-worker pass over rank 1's scattered shards yields exactly their utterances
    ds = TarredAudioDataset(manifest, pattern, None, SR, shard_strategy="scatter", world_size=2, global_rank=1)
    loader = DataLoader(ds, batch_size=3, collate_fn=collate_audio_text, num_workers=2)
    got = sorted(i for batch in loader for i in batch["indices"].tolist())
    expected = sorted(i for i, e in enumerate(ds.entries) if e.extra["shard_id"] in (4, 5, 6, 7))
    assert got == expected


def test_scatter_warns_when_shards_do_not_divide_over_ranks(caplog):
    with caplog.at_level(logging.WARNING, logger="myna.data"), pytest.warns(UserWarning, match="not divisible"):
        shards = expand_sharded_filepaths("s_{0..4}.tar", "scatter", world_size=2, global_rank=1)
    assert shards == ["s_2.tar", "s_3.tar"]
    assert "(5) is not divisible" in caplog.text
    with pytest.raises(ValueError, match="replicate"):
        expand_sharded_filepaths("s_{0..0}.tar", "scatter", world_size=2, global_rank=0)


def test_shuffle_n_with_a_seed_reproduces_and_shuffles(eight_shards):
    def order(seed):
        ds = TarredAudioDataset(eight_shards / "tarred_audio_manifest.json", str(eight_shards / "audio_{0..7}.tar"),
                                None, SR, shuffle_n=8, shuffle=True, seed=seed)
        return [item["index"] for item in ds]

    assert order(3) == order(3)
    assert order(3) != order(4)
    assert sorted(order(3)) == list(range(16))


def test_corrupt_member_is_reported_by_shard_and_member_counted_and_skipped(eight_shards, caplog):
    shard = eight_shards / "audio_0.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    bad_name = members[0][0].name
    with tarfile.open(shard, "w") as tar:  # first member's audio replaced by garbage
        for i, (info, data) in enumerate(members):
            data = b"not audio at all" * 8 if i == 0 else data
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    truncated = eight_shards / "audio_1.tar"
    truncated.write_bytes(truncated.read_bytes()[:700])  # cut inside the first member
    ds = TarredAudioDataset(eight_shards / "tarred_audio_manifest.json", str(eight_shards / "audio_{0..7}.tar"), None, SR)
    with caplog.at_level(logging.WARNING, logger="myna.data"):
        items = list(ds)
    assert ds.skipped == 2
    assert len(items) == 16 - 1 - 2
    assert f"shard {shard} member {bad_name}" in caplog.text
    assert f"shard {truncated} member" in caplog.text


def test_cli_data_tar_writes_nemo_layout(corpus, tmp_path, capsys):
    code = cli_main(["data", "tar", "--manifest_path", str(corpus), "--target_dir", str(tmp_path / "c"),
                     "--num_shards", "2", "--shuffle", "--shuffle_seed", "1", "--max_duration", "0.5", "--workers", "1"])
    assert code == 0
    assert sorted(os.listdir(tmp_path / "c")) == ["audio_0.tar", "audio_1.tar", "metadata.yaml", "sharded_manifests",
                                                  "tarred_audio_manifest.json"]
    assert "12 utterances in 2 shards of 6" in capsys.readouterr().out


def _ddp_worker(rank, world_size, root, port, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    cfg = {"manifest_filepath": str(root / "tarred_audio_manifest.json"), "is_tarred": True,
           "tarred_audio_filepaths": str(root / "audio__OP_0..4_CL_.tar"), "sample_rate": SR, "batch_size": 2,
           "shuffle": True, "shuffle_n": 4, "num_workers": 0, "tarred_shard_strategy": "scatter"}
    loader = build_loader(cfg, CharTokenizer(), train=True, seed=1, name="train_ds", world_size=world_size, rank=rank)
    counts = []
    for _ in range(2):  # two epochs; every step has a collective, as a DDP backward would
        n = 0
        for batch in loader:
            total = torch.tensor([batch["audio"].shape[0]], dtype=torch.float32)
            dist.all_reduce(total)
            n += 1
        counts.append(n)
    dist.barrier()
    Path(out, f"rank{rank}.json").write_text(json.dumps(counts))
    dist.destroy_process_group()


def test_two_process_gloo_run_over_tarred_data_finishes_with_equal_batch_counts(tmp_path):
    import socket

    import torch.multiprocessing as mp

    manifest = make_corpus(tmp_path, n=15)
    write_tarred_dataset(manifest, tmp_path / "t", num_shards=5)  # 5 shards over 2 ranks: uneven
    shard = tmp_path / "t" / "audio_0.tar"
    shard.write_bytes(shard.read_bytes()[:700])  # rank 0 also loses most of a shard
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.spawn(_ddp_worker, args=(2, tmp_path / "t", port, str(tmp_path)), nprocs=2, join=False)
    deadline = 120
    import time

    start = time.monotonic()
    while not ctx.join(timeout=1):
        if time.monotonic() - start > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("DDP run over tarred data hung")
    counts = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert counts[0] == counts[1] and counts[0][0] > 0


def test_member_index_maps_members_and_their_sub_segments_to_entries(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in [
        {"audio_filepath": "_d_a.wav", "duration": 0.1}, {"audio_filepath": "_d_a-sub1.wav", "duration": 0.1,
                                                           "offset": 0.1},
        {"audio_filepath": "_d_b.flac", "duration": 0.2}]))
    index = TarMemberIndex.read(manifest)
    assert index["_d_a.wav"] == [0, 1] and index["_d_b.flac"] == [2] and index["_d_c.wav"] == []
    assert len(index) == 3 and index.entries[1].offset == 0.1


def test_a_bad_tarred_manifest_line_names_file_and_line(eight_shards):
    manifest = eight_shards / "tarred_audio_manifest.json"
    lines = manifest.read_text().splitlines()
    lines[6] = "{broken"
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError, match=r"tarred_audio_manifest\.json:7: malformed JSON"):
        TarredAudioDataset(manifest, str(eight_shards / "audio_{0..7}.tar"), None, SR)
