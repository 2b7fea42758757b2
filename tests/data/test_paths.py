"""myna.data.paths: the one parser of manifest, weighted, bucketed and sharded path arguments."""

import pytest
from omegaconf import OmegaConf

from myna.data.paths import (
    bucketed_manifest_paths,
    expand_sharded_filepaths,
    is_nested,
    manifest_paths,
    weighted_manifest_paths,
)


def test_flat_paths_from_commas_lists_and_configs():
    assert manifest_paths("a.json") == ["a.json"]
    assert manifest_paths(" a.json , b.json,") == ["a.json", "b.json"]
    assert manifest_paths(["a.json", "b.json,c.json"]) == ["a.json", "b.json", "c.json"]
    assert manifest_paths(OmegaConf.create({"m": ["a.json", "b.json"]}).m) == ["a.json", "b.json"]


def test_urls_keep_their_double_slash():
    assert manifest_paths("s3://bucket/train.json,https://host/x.json") == ["s3://bucket/train.json",
                                                                           "https://host/x.json"]


def test_flat_reader_refuses_nested_lists_and_nothing_naming_the_key():
    with pytest.raises(ValueError, match="model.train_ds.manifest_filepath: list items must be paths"):
        manifest_paths([["a.json"]], "model.train_ds.manifest_filepath")
    with pytest.raises(ValueError, match="manifest_filepath: no path given"):
        manifest_paths(" , ")
    with pytest.raises(ValueError, match="expected a path or a list"):
        manifest_paths(3)


def test_weighted_paths_in_every_spelling():
    assert weighted_manifest_paths("a.json,b.json") == [("a.json", 1.0), ("b.json", 1.0)]
    assert weighted_manifest_paths([["a.json", 3], ["b.json", 0.5]]) == [("a.json", 3.0), ("b.json", 0.5)]
    assert weighted_manifest_paths("[[a.json, 3], [b.json, 1]]") == [("a.json", 3.0), ("b.json", 1.0)]
    with pytest.raises(ValueError, match="weight of a.json must be >= 0"):
        weighted_manifest_paths([["a.json", -1]])
    with pytest.raises(ValueError, match=r"expected a path or \[path, weight\]"):
        weighted_manifest_paths([["a.json", "b.json", 2]])


def test_buckets_are_lists_of_paths_and_nesting_is_detected():
    assert bucketed_manifest_paths([["b1.json"], ["b2a.json", "b2b.json"], "b3.json"]) == [
        ["b1.json"], ["b2a.json", "b2b.json"], ["b3.json"]]
    assert is_nested([["b1.json"], ["b2.json"]]) and is_nested(OmegaConf.create([["x"]]))
    assert not is_nested("a.json,b.json") and not is_nested(["a.json"]) and not is_nested(None)
    with pytest.raises(ValueError, match="manifest_filepath bucket 2: no path given"):
        bucketed_manifest_paths([["b1.json"], []])


def test_shards_expand_braces_and_scatter_over_ranks():
    assert expand_sharded_filepaths("s3://b/audio_{0..3}.tar", "scatter", world_size=2, global_rank=1) == [
        "s3://b/audio_2.tar", "s3://b/audio_3.tar"]
    assert expand_sharded_filepaths(["x_{a,b}.tar", "y.tar"]) == ["x_a.tar", "x_b.tar", "y.tar"]
    with pytest.raises(ValueError, match="tarred_shard_strategy must be one of"):
        expand_sharded_filepaths("a.tar", "spread")
