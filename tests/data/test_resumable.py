"""myna.data.resumable: every loader path, interrupted mid-epoch and restored, serves the same batches.

Each path is run twice from a dataset section: once without interruption for two epochs, and once
stopped after some batches of the first epoch, its ``state_dict()`` passed through JSON to a
freshly built loader, which then finishes the epoch and plays the next. The utterance ids of every
batch must agree, batch by batch, with and without DataLoader workers.
"""

import json
from itertools import islice

import pytest
import torch

from myna.data.factory import build_loader
from myna.data.resumable import ReplayLoader, ResumableDataLoader, ResumableLoader
from myna.data.sampling import DistributedBatchSampler
from myna.data.tarred import write_tarred_dataset

SR = 8000


@pytest.fixture(scope="module")
def data(tmp_path_factory, wav_manifest):
    root = tmp_path_factory.mktemp("resume")
    plain = wav_manifest(root, "plain", 21, seed=0)
    buckets = [wav_manifest(root, "short", 9, seed=1), wav_manifest(root, "long", 7, seed=2)]
    write_tarred_dataset(plain, root / "tar", num_shards=3)  # 3 shards over 2 workers: one runs dry first
    for b, manifest in enumerate(buckets):
        write_tarred_dataset(manifest, root / f"tarbucket{b}", num_shards=2)
    return root, plain, buckets


def section(path: str, data, workers: int) -> dict:
    root, plain, buckets = data
    tar = root / "tar"
    common = {"sample_rate": SR, "shuffle": True, "num_workers": workers}
    if path == "plain":
        return {**common, "manifest_filepath": plain, "batch_size": 4}
    if path == "semi_sorted":
        return {**common, "manifest_filepath": plain, "batch_size": 4, "use_semi_sorted_batching": True}
    if path == "bucketing":
        return {**common, "manifest_filepath": [[buckets[0]], [buckets[1]]], "batch_size": 3,
                "bucketing_weights": [2, 1]}
    if path == "bucketing_tarred":
        return {**common, "manifest_filepath": [[str(root / f"tarbucket{b}" / "tarred_audio_manifest.json")]
                                                for b in range(2)],
                "tarred_audio_filepaths": [[str(root / f"tarbucket{b}" / "audio__OP_0..1_CL_.tar")] for b in range(2)],
                "is_tarred": True, "batch_size": 2, "shuffle_n": 4}
    if path == "tarred":
        return {**common, "manifest_filepath": str(tar / "tarred_audio_manifest.json"), "is_tarred": True,
                "tarred_audio_filepaths": str(tar / "audio__OP_0..2_CL_.tar"), "batch_size": 2, "shuffle_n": 5}
    if path == "lhotse":
        return {**common, "use_lhotse": True, "manifest_filepath": plain, "batch_duration": 0.5,
                "batch_size": None, "use_bucketing": True, "num_buckets": 2, "seed": 3, "shuffle_buffer_size": 8,
                "bucket_buffer_size": 8, "bucket_duration_bins": [0.17]}
    if path == "lhotse_tarred":
        return {**common, "use_lhotse": True, "is_tarred": True, "batch_duration": 0.5, "batch_size": None,
                "manifest_filepath": str(tar / "sharded_manifests" / "manifest__OP_0..2_CL_.json"),
                "tarred_audio_filepaths": str(tar / "audio__OP_0..2_CL_.tar"), "seed": 3,
                "shard_seed": "randomized", "shuffle_buffer_size": 8}
    raise ValueError(path)


PATHS = ["plain", "semi_sorted", "bucketing", "bucketing_tarred", "tarred", "lhotse", "lhotse_tarred"]
LHOTSE_EPOCH = 5  # batches per epoch of the endless Lhotse loaders (Lightning's limit_train_batches)


def epoch_length(loader) -> int:
    try:
        return len(loader)
    except TypeError:
        return LHOTSE_EPOCH


def ids_of(batches) -> list[list[str]]:
    return [list(b["ids"]) for b in batches]


def play(loader, counts) -> list[list[list[str]]]:
    """Ids of the first counts[e] batches of each successive epoch."""
    return [ids_of(islice(iter(loader), n)) for n in counts]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("path", PATHS)
def test_loader_interrupted_mid_epoch_resumes_to_the_same_batches(data, path, workers):
    cfg = section(path, data, workers)

    def build():
        return build_loader(cfg, None, train=True, seed=11, name="train_ds")

    reference = build()
    n = epoch_length(reference)
    expected = play(reference, [n, n])
    assert expected[0] != expected[1]  # a new order each epoch: the comparison can fail
    for stop in (1, n - 1):  # just begun; all but one served (past the point where a worker ran dry)
        first = build()
        seen = ids_of(islice(iter(first), stop))
        state = json.loads(json.dumps(first.state_dict()))  # plain data, as a checkpoint holds it
        assert state["epoch"] == 0 and state["batches"] == stop
        resumed = build()
        resumed.load_state_dict(state)
        rest, second = play(resumed, [n - stop, n])
        assert seen + rest == expected[0], f"{path}: epoch 0 after a stop at batch {stop}"
        assert second == expected[1], f"{path}: epoch 1 after a stop at batch {stop}"


def test_plain_loader_covers_every_utterance_once_per_epoch(data):
    loader = build_loader(section("plain", data, 0), None, train=True, seed=11, name="train_ds")
    for epoch in play(loader, [len(loader)] * 2):
        ids = [i for batch in epoch for i in batch]
        assert sorted(ids) == sorted(set(ids)) and len(ids) == 21


def test_resumed_loader_skips_the_batches_already_served_in_that_epoch():
    class Indices(torch.utils.data.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            return i

    def loader():
        sampler = DistributedBatchSampler([1.0] * 20, batch_size=3, shuffle=True, seed=5)
        return ResumableDataLoader(Indices(), sampler, collate_fn=list)

    uninterrupted = loader()
    first_epoch = list(uninterrupted)
    second_epoch = list(uninterrupted)

    interrupted = loader()
    iterator = iter(interrupted)
    seen = [next(iterator) for _ in range(4)]
    state = interrupted.state_dict()
    assert state == {"epoch": 0, "batches": 4}

    resumed = loader()
    resumed.load_state_dict(state)
    assert seen + list(resumed) == first_epoch
    assert list(resumed) == second_epoch
    old = loader()
    old.load_state_dict({"epoch": 0, "batches_served": 4})  # the state myna's checkpoints held before
    assert list(old) == first_epoch[4:]


def test_position_at_the_end_of_an_epoch_resumes_with_the_next_epoch():
    batches = [[1, 2], [3], [4, 5]]
    loader = ReplayLoader(batches)
    list(loader)
    assert loader.state_dict() == {"epoch": 0, "batches": 3}
    resumed = ReplayLoader(batches)
    resumed.load_state_dict(loader.state_dict())
    assert resumed.epoch == 1 and list(resumed) == batches


def test_marked_consumption_keeps_the_state_behind_a_consumer_reading_ahead():
    loader = ReplayLoader([["a"], ["b"], ["c"], ["d"]])
    iterator = iter(loader)
    next(iterator), next(iterator)  # the consumer fetched two batches ...
    loader.batch_consumed()  # ... and trained on one
    assert loader.state_dict() == {"epoch": 0, "batches": 1}
    next(iterator)
    loader.batch_consumed()
    assert loader.state_dict()["batches"] == 2
    loader.end_epoch()  # the consumer's epoch ends here (limit_train_batches)
    assert loader.state_dict() == {"epoch": 1, "batches": 0}
    assert loader.epoch == 1


def test_set_epoch_to_another_epoch_drops_a_restored_position():
    loader = ReplayLoader([[1], [2], [3]])
    loader.load_state_dict({"epoch": 0, "batches": 2})
    loader.set_epoch(0)
    assert list(loader) == [[3]]
    loader.load_state_dict({"epoch": 0, "batches": 2})
    loader.set_epoch(4)
    assert list(loader) == [[1], [2], [3]] and loader.state_dict()["epoch"] == 4


def test_bad_state_is_an_error():
    with pytest.raises(ValueError, match="not a loader position"):
        ReplayLoader([[1]]).load_state_dict({"step": 3})


def test_resuming_a_streaming_loader_with_another_worker_count_is_an_error_naming_both(data):
    first = build_loader(section("tarred", data, 2), None, train=True, seed=11, name="train_ds")
    next(iter(first))
    state = first.state_dict()
    other = build_loader(section("tarred", data, 0), None, train=True, seed=11, name="train_ds")
    other.load_state_dict(state)
    with pytest.raises(ValueError, match="2 loader workers; this loader has 1"):
        next(iter(other))


def test_every_loader_path_is_resumable(data):
    for path in PATHS:
        loader = build_loader(section(path, data, 0), None, train=True, seed=11, name="train_ds")
        assert isinstance(loader, ResumableLoader), path
