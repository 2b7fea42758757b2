"""Save and load whole models as .nemo-layout archives (myna's own and NeMo's).

``save_model`` writes the model config (NeMo-shaped, tokenizer files referenced as
``nemo:<member>``), the state dict and the tokenizer files into one tar. ``load_model`` reads
that, or a NeMo-made ``.nemo`` of a supported class, and returns the model in eval mode.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Mapping

from omegaconf import DictConfig, OmegaConf

from myna.interop.nemo import read_nemo, write_nemo
from myna.models.builder import MODEL_CLASSES, build_model
from myna.text import load_tokenizer

__all__ = ["save_model", "load_model"]

_TOKENIZER_FILES = ("tokenizer.model", "tokenizer.vocab", "vocab.txt")
_TOKENIZER_KEYS = {"model_path": "tokenizer.model", "spe_tokenizer_vocab": "tokenizer.vocab",
                   "vocab_path": "vocab.txt"}
# Sections of a training config that describe data or the run, not the model.
_RUN_ONLY = ("train_ds", "validation_ds", "test_ds", "optim")


def save_model(model, cfg: DictConfig | Mapping, path: str | Path) -> Path:
    """Write ``model`` with its config and tokenizer to a .nemo-layout archive at ``path``."""
    full = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    model_cfg = dict(full.get("model", full))
    model_cfg["target"] = model_cfg.get("target", "myna.TransducerModel")
    tokenizer_dir = Path(model_cfg["tokenizer"]["dir"])
    artifacts = {}
    tok_cfg = dict(model_cfg["tokenizer"])
    for key, name in _TOKENIZER_KEYS.items():
        source = tokenizer_dir / name
        if source.is_file():
            artifacts[name] = source
            tok_cfg[key] = f"nemo:{name}"
    if "tokenizer.model" not in artifacts:
        raise ValueError(f"tokenizer folder {tokenizer_dir} has no tokenizer.model")
    tok_cfg["dir"] = None
    model_cfg["tokenizer"] = tok_cfg
    return write_nemo(path, model_cfg, model.state_dict(), artifacts)


def load_model(path: str | Path, map_location: str = "cpu"):
    """Load a myna or NeMo ``.nemo`` archive; returns the model in eval mode.

    Raises ValueError naming the file for an unsupported model class, a missing tokenizer or
    weights that do not fit the config (missing / unexpected / mis-shaped keys are listed).
    """
    path = Path(path)
    archive = read_nemo(path)
    cfg = archive.config
    target = cfg.get("target", "myna.TransducerModel")
    if target not in MODEL_CLASSES:
        raise ValueError(f"{path}: model class {target!r} is not supported; supported: {sorted(MODEL_CLASSES)}")
    tok_cfg = cfg.get("tokenizer") or {}
    model_ref = str(tok_cfg.get("model_path") or "")
    if not model_ref.startswith("nemo:"):
        raise ValueError(f"{path}: tokenizer.model_path={model_ref!r} does not reference a file inside the archive")
    with tempfile.TemporaryDirectory(prefix="myna-tokenizer-") as tmp:
        written = archive.extract_artifacts(tmp)
        member = model_ref[len("nemo:"):]
        if member not in written:
            raise ValueError(f"{path}: the archive has no tokenizer member {member!r}")
        tokenizer = load_tokenizer(written[member])  # SentencePiece keeps the model in memory
    model_cfg = {k: v for k, v in cfg.items() if k not in _RUN_ONLY}
    model = build_model(model_cfg, tokenizer)
    _load_state(model, archive.state_dict, path)
    model.to(map_location)
    model.eval()
    model.config = cfg
    return model


def _load_state(model, state_dict: Mapping, path: Path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mis_shaped = sorted(k for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or mis_shaped:
        details = []
        if missing:
            details.append(f"missing {missing[:10]}{' ...' if len(missing) > 10 else ''}")
        if unexpected:
            details.append(f"unexpected {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
        if mis_shaped:
            details.append("mis-shaped " + ", ".join(
                f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}" for k in mis_shaped[:10]))
        raise ValueError(f"{path}: weights do not fit the config: " + "; ".join(details))
    model.load_state_dict(state_dict, strict=True)
