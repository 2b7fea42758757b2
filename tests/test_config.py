"""Recipes and NeMo-style overrides."""

import pytest
import yaml

from myna.config import ConfigError, load_config, save_config


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny",
        "model": {"train_ds": {"batch_size": 4}, "encoder": {"_target_": "ConformerEncoder", "d_model": 8}},
        "trainer": {"max_steps": 10},
    }))
    return path


def test_recipe_values_override_defaults_and_interpolations_resolve(recipe):
    cfg = load_config(recipe)
    assert cfg.model.train_ds.batch_size == 4
    assert cfg.model.validation_ds.batch_size == 16  # default kept
    assert cfg.model.train_ds.sample_rate == 16000  # ${model.sample_rate}
    assert cfg.exp_manager.name == "tiny"


def test_dotted_override_parses_yaml_values(recipe):
    cfg = load_config(recipe, ["model.train_ds.batch_size=8", "model.optim.betas=[0.8,0.9]",
                               "model.train_ds.max_duration=null"])
    assert cfg.model.train_ds.batch_size == 8
    assert list(cfg.model.optim.betas) == [0.8, 0.9]
    assert cfg.model.train_ds.max_duration is None


def test_unknown_override_key_is_an_error_naming_it(recipe):
    with pytest.raises(ConfigError, match="model.train_ds.batch_sise"):
        load_config(recipe, ["model.train_ds.batch_sise=8"])


def test_double_plus_adds_or_sets_and_single_plus_refuses_existing(recipe):
    cfg = load_config(recipe, ["++trainer.max_steps=100", "++model.train_ds.new_key=3"])
    assert cfg.trainer.max_steps == 100 and cfg.model.train_ds.new_key == 3
    with pytest.raises(ConfigError, match="already exists"):
        load_config(recipe, ["+trainer.max_steps=5"])


def test_tilde_deletes_a_key(recipe):
    cfg = load_config(recipe, ["~model.encoder.d_model"])
    assert "d_model" not in cfg.model.encoder


def test_free_form_sections_accept_module_keys(recipe):
    cfg = load_config(recipe, ["model.encoder.n_layers=3"])
    assert cfg.model.encoder.n_layers == 3 and cfg.model.encoder.d_model == 8


def test_unknown_key_in_recipe_is_an_error_naming_it(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  train_ds:\n    batch_sizes: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'model.train_ds.batch_sizes'"):
        load_config(path)


def test_malformed_override_and_missing_recipe(recipe, tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(recipe, ["model.train_ds.batch_size"])
    with pytest.raises(ConfigError, match="recipe not found"):
        load_config(tmp_path / "nope.yaml")


def test_saved_config_loads_back_identically(recipe, tmp_path):
    cfg = load_config(recipe, ["model.train_ds.batch_size=2"])
    save_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config(tmp_path / "out" / "config.yaml")
    assert again == cfg


def test_shipped_recipes_load(repo_root=None):
    from pathlib import Path

    for path in sorted((Path(__file__).parent.parent / "conf").glob("*.yaml")):
        cfg = load_config(path)
        if cfg.model.encoder:
            assert cfg.model.encoder._target_, path
        else:  # a fine-tuning recipe takes its architecture from the checkpoint it starts from
            assert "init_from_nemo_model" in path.read_text(), path


def test_exponent_override_is_a_float_as_hydra_reads_it():
    cfg = load_config(None, ["model.optim.lr=1e-3", "model.optim.eps=-2.5E-8", "name=1e3x"])
    assert cfg.model.optim.lr == 0.001 and isinstance(cfg.model.optim.lr, float)
    assert cfg.model.optim.eps == -2.5e-8 and cfg.name == "1e3x"
