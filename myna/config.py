"""YAML recipes with NeMo-style dotted overrides, validated against myna's schema.

A recipe is a YAML file shaped like NeMo's (``model.train_ds``, ``model.encoder``, ``trainer``,
``exp_manager``). It is merged onto :data:`DEFAULTS`; a key that the defaults do not know is an
error naming the key, except inside the free-form sections (``model.encoder`` and friends), whose
keys are checked by the module that consumes them.

Overrides follow Hydra's grammar as NeMo users type it:

>>> cfg = load_config("conf/contextnet_rnnt_dummy.yaml",
...                   ["model.train_ds.batch_size=8", "++trainer.max_steps=100"])

- ``key=value`` sets an existing key (unknown key: error),
- ``+key=value`` adds a key that must not exist yet,
- ``++key=value`` adds or sets,
- ``~key`` deletes a key.

Values are parsed as YAML (``8`` is an int, ``[1,2]`` a list, ``null`` is None).
"""

from __future__ import annotations

import copy
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from myna.data.spec import dataset_defaults
from myna.losses.config import TransducerLossConfig

__all__ = ["ConfigError", "DEFAULTS", "FREE_FORM_SECTIONS", "load_config", "apply_overrides", "save_config"]


class ConfigError(ValueError):
    """A recipe or an override names an unknown key or has a malformed value."""


def _dataset_defaults(shuffle: bool) -> dict[str, Any]:
    """A dataset section's keys and defaults: :class:`myna.data.spec.DatasetSpec`'s, with the
    sample rate taken from ``model.sample_rate``."""
    return dataset_defaults(sample_rate="${model.sample_rate}", shuffle=shuffle)


DEFAULTS: dict[str, Any] = {
    "name": "myna_model",
    "seed": 1234,
    # Fine-tuning (NeMo's keys): a path, or {name: {path, include: [...], exclude: [...]}}.
    # init_from_nemo_model reads a .nemo; init_from_pretrained_model a myna .nemo or .ckpt.
    "init_from_nemo_model": None,
    "init_from_pretrained_model": None,
    "model": {
        "sample_rate": 16000,
        "compute_eval_loss": True,
        "tokenizer": {
            "dir": None,
            "type": "bpe",
            "vocab_size": 128,
            "lowercase": True,
        },
        "train_ds": _dataset_defaults(shuffle=True),
        "validation_ds": _dataset_defaults(shuffle=False),
        "test_ds": _dataset_defaults(shuffle=False),
        "model_defaults": {},
        "preprocessor": {},
        "spec_augment": None,
        "encoder": {},
        "decoder": {},
        "joint": {},
        "aux_ctc": None,
        # Self-supervised models (wav2vec 2.0): the model class, and the sections its builder checks.
        "target": None,
        "quantizer": None,
        "masking": None,
        "contrastive": None,
        "final_dim": 256,
        # wav2vec 2.0 uses 0.1 when unset; NeMo's SSL model applies it only when set.
        "dropout_features": None,
        # NeMo SSL (SpeechEncDecSelfSupervisedModel): its loss_list, the size conformer_ssl.yaml
        # interpolates, and the optional target dropout and feature penalty.
        "loss_list": None,
        "decoder_out": None,
        "dropout_features_q": None,
        "feature_penalty": None,
        # The loss options and defaults of myna.losses.config (ctc_weight comes from aux_ctc).
        "loss": {k: v for k, v in asdict(TransducerLossConfig()).items() if k != "ctc_weight"},
        "decoding": {
            "strategy": "greedy_batch",  # validation decoding
            # The final test evaluation (myna.decoding.decode). "beam" (ALSD) allows several labels
            # per frame, as regular RNN-T training does; "modified_beam" suits rnnt_type "modified".
            "final_strategy": "beam",
            "greedy": {"max_symbols": 10},
            # NeMo's names; ngram_lm_model: ARPA path, ngram_lm_alpha: its shallow-fusion weight.
            # score_norm (rank by score / length) is off: on FSDD it let longer digit words win
            # (beam 6.67% vs 6.33% WER without it, equal to greedy).
            "beam": {"beam_size": 4, "score_norm": False, "ngram_lm_model": None, "ngram_lm_alpha": 0.0},
        },
        "optim": {
            "name": "adamw",
            "lr": 1e-3,
            "betas": [0.9, 0.98],
            "eps": 1e-8,
            "weight_decay": 1e-3,
            "sched": {
                "name": "CosineAnnealing",
                "warmup_steps": 0,
                "warmup_ratio": None,
                "min_lr": 1e-6,
                "d_model": None,
                "max_steps": None,
                "power": 1.0,  # PolynomialDecayAnnealing
                "phase_ratio": [0.1, 0.4, 0.5],  # TriStage: warm-up, hold, decay fractions
                "init_lr_scale": 0.01,  # TriStage: start at this fraction of lr
                "final_lr_scale": 0.05,  # TriStage: decay to this fraction of lr
            },
        },
    },
    "trainer": {
        "max_steps": -1,
        "max_epochs": 100,
        "val_check_interval": 1.0,
        "check_val_every_n_epoch": 1,
        "log_every_n_steps": 10,
        "accelerator": "auto",
        "devices": 1,  # processes per node (GPUs, or CPU processes with accelerator: cpu)
        "num_nodes": 1,
        # NeMo's names: auto (one process: none; several: ddp), ddp, fsdp, ddp_spawn, ...
        "strategy": "auto",
        "sync_batchnorm": False,  # batch-norm statistics over all ranks' batches (DDP)
        "precision": "32-true",
        "gradient_clip_val": 0.0,
        "accumulate_grad_batches": 1,
        "num_sanity_val_steps": 0,
        "limit_train_batches": 1.0,
        "limit_val_batches": 1.0,
        "enable_progress_bar": True,
        "deterministic": False,
        # myna's (see myna.training.guards): skip a batch whose loss or gradients are NaN/inf
        # (false: stop at the first), and stop once more than max_skipped_batches were (-1: never).
        "skip_nan_grad": True,
        "max_skipped_batches": 20,
    },
    # How the processes of a multi-process run find each other, and what ends a run that lost one
    # (myna.training.distributed). model.train_ds batch sizes are per rank.
    "distributed": {
        "timeout_s": 600,  # a collective (or the wait for rank 0's tokenizer) that takes longer fails
        "heartbeat_s": 2.0,  # each rank says it is alive this often (0: no watchdog)
        "lost_after_s": 30.0,  # a rank silent this long is named as lost and every rank stops
        # trainer.strategy=fsdp: what is sharded and how checkpoints are written (Lightning's FSDPStrategy)
        "fsdp": {"sharding_strategy": "FULL_SHARD", "state_dict_type": "sharded", "cpu_offload": False},
    },
    "exp_manager": {
        "exp_dir": "exp",
        "name": "${name}",
        "checkpoint_every_n_steps": 1000,
        # NeMo's resume keys and meanings (myna.training.rerun); myna resumes by default and a
        # first run in a new folder is not an error.
        "resume_if_exists": True,
        "resume_ignore_no_checkpoint": True,
        "resume_past_end": False,
        "resume_from_checkpoint": None,
        "create_tensorboard_logger": True,
        "create_csv_logger": True,
        "plot_learning_curve": True,
        # An exponential moving average of the weights (NeMo's exp_manager.ema keys): validation
        # and the final model use the averaged weights; checkpoints keep both.
        "ema": {"enable": False, "decay": 0.999, "every_n_steps": 1, "cpu_offload": False},
        # Write the utterance ids each rank trained on, per epoch (utterances/epochN_rankR.txt).
        "log_utterance_ids": False,
        # Weights & Biases as NeMo's exp_manager offers it (pip install 'myna[wandb]'); the kwargs
        # go to Lightning's WandbLogger (name, project, entity, tags, offline, ...).
        "create_wandb_logger": False,
        "wandb_logger_kwargs": {"name": None, "project": None},
    },
    # The pre-flight check of every manifest before the first step (myna.data.check): files exist,
    # headers decode, durations agree with the audio within duration_tolerance seconds, texts are
    # non-empty. action: error (stop on a problem) or warn. workers: null = one per CPU (<= 16).
    "data_check": {
        "enabled": True,
        "duration_tolerance": 0.1,
        "workers": None,
        "action": "error",
    },
}

# Sections whose keys belong to the module they configure (NeMo's own keys, checked there).
FREE_FORM_SECTIONS = (
    "model.model_defaults",
    "model.preprocessor",
    "model.spec_augment",
    "model.encoder",
    "model.decoder",
    "model.joint",
    "model.aux_ctc",
    "model.quantizer",
    "model.masking",
    "model.contrastive",
    "model.loss_list",
    "model.decoding.beam",
    "exp_manager.wandb_logger_kwargs",
    "init_from_nemo_model",
    "init_from_pretrained_model",
)


# YAML 1.1 (PyYAML) reads 1e-3 as a string; Hydra and NeMo users mean a float.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _parse_value(text: str, override: str) -> Any:
    try:
        value = yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {override!r}: value {text!r} is not valid YAML ({err})") from None
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)
    return value


def _lookup(cfg: DictConfig, dotted: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in dotted.split("."):
        if isinstance(node, DictConfig) and part in node:
            node = node._get_node(part)
        elif isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node._get_node(int(part))
        else:
            return False, None
    return True, node


def _lookup_plain(tree: Mapping, dotted: str) -> tuple[bool, Any]:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _in_free_form(dotted: str) -> bool:
    return any(dotted == s or dotted.startswith(s + ".") for s in FREE_FORM_SECTIONS)


def apply_overrides(cfg: DictConfig, overrides: Iterable[str]) -> DictConfig:
    """Apply Hydra-style overrides (``k=v``, ``+k=v``, ``++k=v``, ``~k``) to ``cfg`` in place."""
    for override in overrides:
        if override.startswith("~"):
            key = override[1:].split("=", 1)[0]
            exists, _ = _lookup(cfg, key)
            if not exists:
                raise ConfigError(f"override {override!r}: cannot delete unknown key '{key}'")
            parent, _, leaf = key.rpartition(".")
            parent_node = OmegaConf.select(cfg, parent) if parent else cfg
            with _open(cfg):
                del parent_node[leaf]
            continue
        if "=" not in override:
            raise ConfigError(f"override {override!r} is not of the form key=value")
        key, text = override.split("=", 1)
        mode = "set"
        if key.startswith("++"):
            key, mode = key[2:], "force"
        elif key.startswith("+"):
            key, mode = key[1:], "add"
        if not key:
            raise ConfigError(f"override {override!r} has an empty key")
        exists, _ = _lookup(cfg, key)
        if mode == "set" and not exists and not _in_free_form(key):
            raise ConfigError(
                f"override {override!r}: unknown key '{key}' (use ++{key}=... to add a new key)"
            )
        if mode == "add" and exists:
            raise ConfigError(f"override {override!r}: key '{key}' already exists (use {key}=... or ++{key}=...)")
        with _open(cfg):
            OmegaConf.update(cfg, key, _parse_value(text, override), merge=False, force_add=True)
    return cfg


class _open:
    """Context manager that lifts OmegaConf's struct flag for a moment."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def __enter__(self):
        self.was_struct = OmegaConf.is_struct(self.cfg)
        OmegaConf.set_struct(self.cfg, False)

    def __exit__(self, *exc):
        OmegaConf.set_struct(self.cfg, self.was_struct)
        return False


def _check_known_keys(recipe: Any, schema: Any, path: str, source: str) -> None:
    """Raise ConfigError naming the first key of ``recipe`` that ``schema`` does not know."""
    if _in_free_form(path) or not isinstance(recipe, Mapping) or not isinstance(schema, Mapping):
        return
    for key, value in recipe.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key not in schema:
            raise ConfigError(f"{source}: unknown key '{dotted}'")
        _check_known_keys(value, schema[key], dotted, source)


def load_config(path: str | Path | None, overrides: Iterable[str] = (), defaults: Mapping | None = None) -> DictConfig:
    """Load a recipe onto the defaults, apply overrides, resolve interpolations.

    Args:
        path: YAML recipe file, an installed recipe's name (``contextnet_rnnt_dummy``, see
            :mod:`myna.recipes`), or None for the defaults alone.
        overrides: Hydra-style override strings.
        defaults: schema and default values (``DEFAULTS`` unless given).

    Returns:
        A resolved DictConfig.
    """
    schema = copy.deepcopy(dict(defaults if defaults is not None else DEFAULTS))
    cfg = OmegaConf.create(schema)
    if path is not None:
        from myna.recipes import resolve_recipe

        try:
            path = resolve_recipe(path)  # a file, or an installed recipe's name
        except ValueError as err:
            raise ConfigError(str(err)) from None
        try:
            recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(recipe, Mapping):
            raise ConfigError(f"{path}: a recipe must be a mapping, got {type(recipe).__name__}")
        _check_known_keys(recipe, schema, "", str(path))
        for section in FREE_FORM_SECTIONS:  # free-form sections replace the defaults whole
            exists, value = _lookup_plain(recipe, section)
            if exists:
                OmegaConf.update(cfg, section, value, merge=False, force_add=True)
        cfg = OmegaConf.merge(cfg, OmegaConf.create(dict(recipe)))
    apply_overrides(cfg, overrides)
    OmegaConf.resolve(cfg)
    return cfg


def save_config(cfg: DictConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically: temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tmp.replace(path)
