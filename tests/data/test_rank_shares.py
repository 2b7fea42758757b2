"""Every sampler path gives each DDP rank its own share of an epoch, with equal step counts.

For each path the loaders of ranks 0 and 1 (world size 2) are built as ``myna train`` builds them
per rank, one epoch (or one pass) is iterated, and the utterance ids are counted: their union is
the split, each utterance exactly once (``replicate``: once per rank, by its meaning).
"""

import json
from collections import Counter
from pathlib import Path

import pytest

from myna.data.factory import build_loader
from myna.data.tarred import write_tarred_dataset

SR = 8000
WORLD = 2


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, wav_manifest):
    root = tmp_path_factory.mktemp("shares")
    short = wav_manifest(root, "short", 12, seed=1)
    long = wav_manifest(root, "long", 8, seed=2)
    write_tarred_dataset(short, root / "t", num_shards=4)
    return {"short": short, "long": long, "tar_manifest": str(root / "t" / "tarred_audio_manifest.json"),
            "shards": str(root / "t" / "audio__OP_0..3_CL_.tar")}


def _lines(manifest: str, n: int) -> list[str]:
    return [f"{manifest}:{i}" for i in range(1, n + 1)]


def _epoch_ids(section: dict, rank: int) -> tuple[list[str], int]:
    loader = build_loader({"sample_rate": SR, **section}, None, train=True, seed=7, name="train_ds",
                          world_size=WORLD, rank=rank)
    batches = list(loader)
    return [i for b in batches for i in b["ids"]], len(batches)


def _shares(section: dict) -> tuple[list[list[str]], list[int]]:
    ids, steps = zip(*(_epoch_ids(section, r) for r in range(WORLD)))
    return list(ids), list(steps)


@pytest.mark.parametrize("path", ["plain", "semi_sorted"])
def test_manifest_batches_split_the_epoch_exactly_once(corpus, path):
    section = {"manifest_filepath": corpus["short"], "batch_size": 3, "shuffle": True}
    if path == "semi_sorted":
        section.update(use_semi_sorted_batching=True, randomization_factor=0.2)
    ids, steps = _shares(section)
    assert steps[0] == steps[1] == 2
    assert not set(ids[0]) & set(ids[1])
    assert Counter(ids[0] + ids[1]) == Counter(_lines(corpus["short"], 12))


def test_uneven_splits_pad_with_repeats_to_equal_steps(corpus):
    ids, steps = _shares({"manifest_filepath": corpus["short"], "batch_size": 5, "shuffle": True})
    assert steps == [2, 2]  # 12 utterances = 3 batches of 5, padded with one batch of 5 repeats
    counts = Counter(ids[0] + ids[1])
    assert set(counts) == set(_lines(corpus["short"], 12)) and sum(counts.values()) == 12 + 5


def test_static_buckets_split_each_bucket_exactly_once(corpus):
    ids, steps = _shares({"manifest_filepath": [[corpus["short"]], [corpus["long"]]], "batch_size": 2,
                          "bucketing_strategy": "synced_randomized"})
    assert steps[0] == steps[1] == 3 + 2
    assert Counter(ids[0] + ids[1]) == Counter(_lines(corpus["short"], 12) + _lines(corpus["long"], 8))


def test_tarred_scatter_gives_each_rank_its_own_shards(corpus):
    ids, steps = _shares({"manifest_filepath": corpus["tar_manifest"], "is_tarred": True,
                          "tarred_audio_filepaths": corpus["shards"], "batch_size": 3, "shuffle": True,
                          "tarred_shard_strategy": "scatter"})
    assert steps[0] == steps[1] == 2
    assert Counter(ids[0] + ids[1]) == Counter(_lines(corpus["tar_manifest"], 12))


def test_tarred_replicate_gives_every_rank_every_utterance(corpus):
    ids, steps = _shares({"manifest_filepath": corpus["tar_manifest"], "is_tarred": True,
                          "tarred_audio_filepaths": corpus["shards"], "batch_size": 3, "shuffle": True,
                          "tarred_shard_strategy": "replicate"})
    assert steps[0] == steps[1] == 4
    for rank_ids in ids:
        assert Counter(rank_ids) == Counter(_lines(corpus["tar_manifest"], 12))
    assert ids[0] != ids[1]  # each rank in its own order


def test_lhotse_manifest_batches_split_a_pass_exactly_once(corpus):
    ids, _ = _shares({"use_lhotse": True, "manifest_filepath": corpus["short"], "batch_size": 2,
                      "force_finite": True, "shuffle": True, "seed": 3})
    assert Counter(ids[0] + ids[1]) == Counter(f"short-{i}" for i in range(1, 13))  # cut ids: stem-line


@pytest.mark.parametrize("shard_seed", [5, "randomized"])
def test_lhotse_tarred_scatter_splits_shards_over_ranks(corpus, shard_seed):
    section = {"use_lhotse": True, "is_tarred": True, "manifest_filepath": corpus["tar_manifest"],
               "tarred_audio_filepaths": corpus["shards"], "batch_size": 2, "force_finite": True, "shuffle": True,
               "shard_seed": shard_seed}
    ids, _ = _shares(section)
    lines = Counter(cut.rsplit("-", 1)[1] for cut in ids[0] + ids[1])  # cut ids: shard-member-line
    assert lines == Counter(str(i) for i in range(1, 13))
    assert ids[0] == _epoch_ids(section, 0)[0]  # the order is a function of the seeds


def test_lhotse_tarred_replicate_keeps_nemo_behaviour(corpus):
    section = {"use_lhotse": True, "is_tarred": True, "manifest_filepath": corpus["tar_manifest"],
               "tarred_audio_filepaths": corpus["shards"], "batch_size": 2, "force_finite": True, "shuffle": True,
               "shard_seed": "randomized", "tarred_shard_strategy": "replicate"}
    ids, _ = _shares(section)
    assert len(ids[0]) == len(ids[1]) == 12 and ids[0] != ids[1]


@pytest.fixture(scope="module")
def shar_dir(corpus, tmp_path_factory):
    """The 12 short utterances as a Lhotse Shar directory of 4 shards (3 cuts each)."""
    from lhotse import CutSet, Recording, SupervisionSegment

    cuts = []
    with open(corpus["short"]) as f:
        for line_no, line in enumerate(f, 1):
            entry = json.loads(line)
            audio = Path(corpus["short"]).parent / entry["audio_filepath"]  # relative to the manifest
            recording = Recording.from_file(audio, recording_id=f"utt{line_no}")
            cut = recording.to_cut()
            cut.supervisions = [SupervisionSegment(id=cut.id, recording_id=recording.id, start=0.0,
                                                   duration=recording.duration, text=entry["text"])]
            cuts.append(cut)
    out = tmp_path_factory.mktemp("shar")
    CutSet.from_cuts(cuts).to_shar(out, fields={"recording": "wav"}, shard_size=3)
    return str(out)


@pytest.mark.parametrize("shard_seed", [5, "randomized"])
def test_lhotse_shar_scatter_splits_shards_over_ranks(shar_dir, shard_seed):
    section = {"use_lhotse": True, "shar_path": shar_dir, "batch_size": 2, "force_finite": True, "shuffle": True,
               "shard_seed": shard_seed}
    ids, _ = _shares(section)
    assert Counter(ids[0] + ids[1]) == Counter(f"utt{i}" for i in range(1, 13))
    assert len(ids[0]) == len(ids[1]) == 6  # two shards of three cuts each


def test_lhotse_shar_replicate_gives_every_rank_every_cut(shar_dir):
    section = {"use_lhotse": True, "shar_path": shar_dir, "batch_size": 2, "force_finite": True, "shuffle": True,
               "shard_seed": "randomized", "tarred_shard_strategy": "replicate"}
    ids, _ = _shares(section)
    assert sorted(ids[0]) == sorted(ids[1]) == sorted(f"utt{i}" for i in range(1, 13))


def test_lhotse_shar_with_fewer_shards_than_ranks_is_an_error_naming_it(corpus, tmp_path):
    from lhotse import CutSet, Recording

    first = json.loads(Path(corpus["short"]).read_text().splitlines()[0])["audio_filepath"]
    recording = Recording.from_file(Path(corpus["short"]).parent / first)
    CutSet.from_cuts([recording.to_cut()]).to_shar(tmp_path, fields={"recording": "wav"}, shard_size=3)
    with pytest.raises(ValueError, match="1 Shar shards cannot be scattered over 2 ranks"):
        _epoch_ids({"use_lhotse": True, "shar_path": str(tmp_path), "batch_size": 2, "force_finite": True}, 0)
