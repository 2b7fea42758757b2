"""myna.data.spec: dataset sections parsed once into a typed spec, defaults in one place."""

import dataclasses

import pytest
from omegaconf import OmegaConf

from myna.config import DEFAULTS, load_config
from myna.data.spec import DatasetSpec, dataset_defaults


def test_recipe_defaults_are_the_spec_defaults():
    spec_defaults = {f.name: f.default for f in dataclasses.fields(DatasetSpec)}
    for name, shuffle in (("train_ds", True), ("validation_ds", False), ("test_ds", False)):
        section = DEFAULTS["model"][name]
        assert section == {**spec_defaults, "sample_rate": "${model.sample_rate}", "shuffle": shuffle}


def test_a_resolved_recipe_section_parses_to_the_spec():
    cfg = load_config(None, ["model.sample_rate=8000", "model.train_ds.manifest_filepath=a.json",
                             "model.train_ds.batch_size=4"])
    spec = DatasetSpec.from_section(cfg.model.train_ds, "train_ds")
    assert (spec.sample_rate, spec.batch_size, spec.shuffle, spec.manifest_filepath) == (8000, 4, True, "a.json")
    assert DatasetSpec.from_section(spec) is spec


def test_values_are_coerced_to_their_types_and_null_means_default_or_unset():
    spec = DatasetSpec.from_section({"batch_size": 8.0, "randomization_factor": 1, "num_workers": None,
                                     "min_duration": None, "batch_duration": 30})
    assert spec.batch_size == 8 and isinstance(spec.batch_size, int)
    assert spec.randomization_factor == 1.0 and isinstance(spec.randomization_factor, float)
    assert spec.num_workers == 0 and spec.min_duration is None and spec.batch_duration == 30.0
    assert DatasetSpec.from_section({"batch_size": None}).batch_size is None  # Lhotse: no cap


@pytest.mark.parametrize("section, message", [
    ({"batchsize": 8}, r"model.train_ds.batchsize is not a dataset key"),
    ({"shuffle": "yes"}, r"model.train_ds.shuffle must be true or false"),
    ({"batch_size": 2.5}, r"model.train_ds.batch_size must be an integer"),
    ({"max_duration": "long"}, r"model.train_ds.max_duration must be a number"),
    ({"text_field": 3}, r"model.train_ds.text_field must be a string"),
    ({"batch_size": 0}, r"model.train_ds.batch_size must be >= 1"),
    ({"num_workers": -1}, r"model.train_ds.num_workers must be >= 0"),
    ({"trim_silence": True}, r"model.train_ds.trim_silence=True is not supported yet"),
    ({"use_start_end_token": True}, r"model.train_ds.use_start_end_token=True is not supported yet"),
    ({"tarred_shard_strategy": "spread"}, r"model.train_ds.tarred_shard_strategy must be one of"),
    ({"bucketing_strategy": "sorted"}, r"model.train_ds.bucketing_strategy must be one of"),
    ({"manifest_filepath": "t.json", "is_tarred": True}, r"model.train_ds.is_tarred is true but tarred_audio_filepaths"),
    ({"min_duration": 3.0, "max_duration": 1.0}, r"model.train_ds: min_duration 3.0 > max_duration 1.0"),
    ({"bucketing_weights": [1, 0]}, r"model.train_ds.bucketing_weights must be positive integers"),
    ({"shuffle_buffer_size": 0}, r"model.train_ds.shuffle_buffer_size must be >= 1"),
    ({"shard_seed": "random"}, r'model.train_ds.shard_seed must be an integer, "trng" or "randomized"'),
    ({"randomization_factor": -0.1}, r"model.train_ds.randomization_factor must be >= 0"),
])
def test_bad_section_is_an_error_naming_the_key(section, message):
    with pytest.raises(ValueError, match=message):
        DatasetSpec.from_section(section, "train_ds")


def test_section_must_be_a_mapping():
    with pytest.raises(ValueError, match="model.test_ds must be a mapping"):
        DatasetSpec.from_section(OmegaConf.create(["a.json"]), "test_ds")


def test_has_source_follows_the_path_that_would_read_it():
    assert not DatasetSpec().has_source
    assert DatasetSpec(manifest_filepath="a.json").has_source
    assert not DatasetSpec(cuts_path="c.jsonl.gz").has_source  # read only with use_lhotse
    assert DatasetSpec(use_lhotse=True, cuts_path="c.jsonl.gz").has_source


def test_dataset_defaults_refuse_unknown_overrides():
    assert dataset_defaults(shuffle=True)["shuffle"] is True
    with pytest.raises(KeyError, match="batchsize"):
        dataset_defaults(batchsize=3)
