"""myna.data.factory: each dataset section goes down the path NeMo would, and each mistake in it is
a clear error naming the section."""

import pytest

from myna.data.factory import build_loader
from myna.data.lhotse_io import LhotseLoader
from myna.data.manifest import ManifestError
from myna.data.resumable import ResumableDataLoader
from myna.data.sampling import BucketChainLoader, FixedLengthLoader
from myna.data.tarred import TarredPasses, write_tarred_dataset

SR = 8000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, wav_manifest):
    root = tmp_path_factory.mktemp("factory")
    manifest = wav_manifest(root, "a", 8, seed=1)
    other = wav_manifest(root, "b", 6, seed=2)
    write_tarred_dataset(manifest, root / "t", num_shards=2)
    return {"manifest": manifest, "other": other, "tar_manifest": str(root / "t" / "tarred_audio_manifest.json"),
            "shards": str(root / "t" / "audio__OP_0..1_CL_.tar")}


def build(section, train=True, **kwargs):
    return build_loader({"sample_rate": SR, **section}, None, train=train, seed=3, name="train_ds", **kwargs)


def test_a_section_without_data_makes_no_loader():
    assert build({}) is None
    assert build({"use_lhotse": True, "batch_duration": 10}) is None


def test_plain_manifest_gives_random_batches_of_this_rank(corpus):
    loader = build({"manifest_filepath": corpus["manifest"], "batch_size": 2, "shuffle": True},
                   world_size=2, rank=1)
    assert isinstance(loader, ResumableDataLoader)
    sampler = loader.batch_sampler
    assert (sampler.rank, sampler.world_size, sampler.shuffle, sampler.randomization_factor) == (1, 2, True, None)
    assert len(loader) == 2 and sum(len(b["ids"]) for b in loader) == 4


def test_semi_sorted_batching_applies_to_training_only(corpus):
    section = {"manifest_filepath": corpus["manifest"], "batch_size": 2, "use_semi_sorted_batching": True,
               "randomization_factor": 0.3, "shuffle": True, "drop_last": True}
    train = build(section).batch_sampler
    assert train.randomization_factor == 0.3 and train.shuffle and train.drop_last
    evaluation = build(section, train=False).batch_sampler
    assert evaluation.randomization_factor is None and not evaluation.shuffle and not evaluation.drop_last


def test_nested_manifests_give_static_buckets_each_with_its_batch_size(corpus):
    loader = build({"manifest_filepath": [[corpus["manifest"]], [corpus["other"]]], "batch_size": 1,
                    "bucketing_batch_size": 2, "bucketing_weights": [1, 2]})
    assert isinstance(loader, BucketChainLoader)
    assert [s.batch_sampler.batch_size for s in loader.sources] == [4, 2, 2]  # bucket 2 played twice
    assert loader.sources[1] is loader.sources[2]
    assert len(loader) == 2 + 3 + 3


def test_tarred_sections_stream_shards_a_fixed_number_of_batches(corpus):
    loader = build({"manifest_filepath": corpus["tar_manifest"], "is_tarred": True,
                    "tarred_audio_filepaths": corpus["shards"], "batch_size": 3})
    assert isinstance(loader, FixedLengthLoader) and isinstance(loader.loader, TarredPasses)
    assert len(loader) == 3  # one worker streams both shards: 8 utterances in batches of 3
    assert sorted(i for b in loader for i in b["ids"]) == sorted(f"{corpus['tar_manifest']}:{n}" for n in range(1, 9))


def test_tarred_buckets_chain_tarred_sources(corpus):
    loader = build({"manifest_filepath": [[corpus["tar_manifest"]]], "is_tarred": True,
                    "tarred_audio_filepaths": [[corpus["shards"]]], "batch_size": 4})
    assert isinstance(loader, BucketChainLoader) and isinstance(loader.sources[0], FixedLengthLoader)


@pytest.mark.parametrize("tarred, streaming", [(False, False), (True, True)])
def test_lhotse_sections_sample_in_the_right_process(corpus, tarred, streaming):
    section = {"use_lhotse": True, "batch_duration": 1.0, "force_finite": True}
    if tarred:
        section.update(is_tarred=True, manifest_filepath=corpus["tar_manifest"],
                       tarred_audio_filepaths=corpus["shards"])
    else:
        section.update(manifest_filepath=corpus["manifest"])
    loader = build(section)
    assert isinstance(loader, LhotseLoader) and loader.streaming is streaming
    assert sum(len(b["ids"]) for b in loader) == 8


@pytest.mark.parametrize("section, error, message", [
    ({"manifest_filepath": "{manifest}", "batchsize": 2}, ValueError, "model.train_ds.batchsize is not a dataset key"),
    ({"manifest_filepath": "{manifest}", "min_duration": 50.0}, ValueError,
     "model.train_ds: no utterances left after filtering"),
    ({"manifest_filepath": "{missing}"}, ManifestError, "manifest not found: .*missing.json"),
    ({"manifest_filepath": [["{manifest}"], ["{other}"]], "is_tarred": True,
      "tarred_audio_filepaths": [["{shards}"]]}, ValueError,
     "manifest_filepath has 2 buckets but tarred_audio_filepaths has 1"),
    ({"manifest_filepath": [["{manifest}"], ["{other}"]], "batch_size": 4, "bucketing_batch_size": 2}, ValueError,
     "batch_size must be 1 when bucketing_batch_size is set"),
    ({"manifest_filepath": [["{manifest}"], ["{other}"]], "bucketing_weights": [1]}, ValueError,
     r"bucketing_weights \[1\] must have one weight per bucket \(2\)"),
    ({"manifest_filepath": [["{manifest}"], []]}, ValueError, "model.train_ds.manifest_filepath bucket 2: no path"),
    ({"use_lhotse": True, "manifest_filepath": "{manifest}", "batch_size": None}, ValueError,
     "model.train_ds: use_lhotse needs batch_duration and/or batch_size"),
    ({"use_lhotse": True, "input_cfg": [{"type": "nemo", "weight": 1}], "batch_size": 2}, ValueError,
     r"input_cfg entry of type nemo needs \['manifest_filepath'\]"),
    ({"manifest_filepath": "{tar_manifest}", "is_tarred": True, "tarred_audio_filepaths": "{shards}",
      "tarred_shard_strategy": "scatter"}, ValueError, "2 shards cannot be scattered over 3 ranks"),
])
def test_each_mistake_is_a_clear_error(corpus, tmp_path, section, error, message):
    values = {**corpus, "missing": str(tmp_path / "missing.json")}

    def fill(value):
        if isinstance(value, str):
            return value.format(**values)
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    with pytest.raises(error, match=message):
        build({k: fill(v) for k, v in section.items()}, world_size=3, rank=0)
