"""``.nemo`` archives in and out: the one place that reads and writes them.

A ``.nemo`` file is a tar (NeMo writes it uncompressed; gzip is accepted too) holding
``model_config.yaml``, ``model_weights.ckpt`` (a ``torch.save``d state dict) and artifacts such
as the tokenizer, which the config references as ``nemo:<member name>``.

What myna writes (``myna train``'s final model, :func:`save_nemo`, ``myna export-nemo``) is a
``.nemo`` that NeMo 3.0 restores with ``ASRModel.restore_from``, and that myna reads back with
nothing lost:

- ``model_config.yaml``: NeMo's model class as ``target`` (``EncDecRNNTBPEModel``,
  ``EncDecHybridRNNTCTCBPEModel`` or ``EncDecCTCModelBPE``), only the sections and keys NeMo
  knows (myna-only keys such as ``encoder.gradient_checkpointing`` are dropped, short
  ``_target_`` names become NeMo's class paths), resolved sizes (``vocab_size``,
  ``num_classes``, ``jointnet.encoder_hidden``/``pred_hidden``, ``vocabulary``), myna's loss
  mapped to NeMo's RNN-T loss (the pruned loss has no NeMo counterpart; it trains the same
  network) and ``ctc_weight`` to ``aux_ctc.ctc_loss_weight``;
- ``model_weights.ckpt``: the state dict minus myna-only tensors (every other name is NeMo's);
- the tokenizer as ``nemo:`` artifacts (``tokenizer.model``, ``tokenizer.vocab``, ``vocab.txt``);
- ``myna_config.yaml``: myna's own ``model:`` config as built (pruned loss, myna decoding
  strategies, memory switches), and ``myna_weights.ckpt``: the myna-only tensors (the pruned
  loss' ``simple_am_proj`` / ``simple_lm_proj``). NeMo does not read these two members;
  :func:`load_nemo` prefers them.

Models NeMo has no class for (a wav2vec 2.0 encoder, a character vocabulary, a pre-training
model) are written as a myna archive of the same layout: ``model_config.yaml`` is myna's own
config (``target: myna.CTCModel`` / ``myna.TransducerModel`` / ``myna.Wav2Vec2PreTrainingModel``),
the tokenizer is its files as members (``vocab.json`` + ``tokenizer_config.json`` for
characters), and no ``myna_*`` members are needed. NeMo does not restore these.

>>> model = load_nemo("fixture.nemo")            # NeMo's or myna's archive -> model, eval mode
>>> save_nemo(model, "out.nemo")                  # NeMo: ASRModel.restore_from("out.nemo")
"""

from __future__ import annotations

import copy
import io
import os
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from myna.archive import UnsafeArchiveError, safe_member_name, safe_target
from myna.interop.adapter import NEMO_MODEL_TARGETS, MODEL_CLASSES, PRETRAINING_KINDS, build_model, component, model_kind
from myna.interop.tensor_files import load_tensor_file
from myna.text import load_tokenizer

__all__ = [
    "NemoArchive", "NemoFormatError", "read_nemo", "write_nemo", "load_nemo", "save_nemo", "nemo_config",
    "read_weights", "find_model_file", "tokenizer_files", "export_nemo_file", "nemo_restorable",
]

CONFIG_MEMBER = "model_config.yaml"
WEIGHTS_MEMBER = "model_weights.ckpt"
MYNA_CONFIG_MEMBER = "myna_config.yaml"
MYNA_WEIGHTS_MEMBER = "myna_weights.ckpt"

# tokenizer config key -> the file name it refers to (NeMo's SentencePiece tokenizer folder).
TOKENIZER_KEYS = {"model_path": "tokenizer.model", "spe_tokenizer_vocab": "tokenizer.vocab", "vocab_path": "vocab.txt"}
# Sections of a training config that describe data or the run, not the model.
RUN_ONLY_SECTIONS = ("train_ds", "validation_ds", "test_ds", "optim")
# Model-level keys NeMo's ASR models read; anything else in a myna config is dropped on export.
_NEMO_MODEL_KEYS = ("sample_rate", "compute_eval_loss", "log_prediction", "skip_nan_grad", "model_defaults",
                    "tokenizer", "preprocessor", "spec_augment", "encoder", "decoder", "joint", "decoding",
                    "loss", "aux_ctc", "variational_noise", "interctc")
_MYNA_ONLY_WEIGHTS = ("simple_am_proj.", "simple_lm_proj.")
_NEMO_RNNT_STRATEGIES = ("greedy", "greedy_batch", "beam", "tsd", "alsd", "maes")


class NemoFormatError(ValueError):
    """The file is not a readable .nemo archive."""


@dataclass
class NemoArchive:
    """Contents of a .nemo archive.

    ``config`` is the model config as a plain dict; ``state_dict`` the weights; ``artifacts``
    maps each other member name (e.g. ``abc_tokenizer.model``) to its bytes. ``myna_config`` and
    ``myna_state_dict`` hold myna's own members when the archive has them.
    """

    config: dict
    state_dict: dict[str, torch.Tensor]
    artifacts: dict[str, bytes]
    myna_config: Optional[dict] = None
    myna_state_dict: dict[str, torch.Tensor] = field(default_factory=dict)

    def extract_artifacts(self, directory: str | Path) -> dict[str, Path]:
        """Write the artifacts into ``directory``; returns member name -> written path.

        Raises:
            UnsafeArchiveError: an artifact name that would land outside ``directory``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, data in self.artifacts.items():
            path = safe_target(directory, name, "archive")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written[name] = path
        return written


def _load_weights(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """A state dict from a member's bytes; NemoFormatError naming ``name`` when it is not one."""
    weights = load_tensor_file(data, name=name)
    if isinstance(weights, Mapping) and "state_dict" in weights and not any(k.startswith("encoder.") for k in weights):
        weights = weights["state_dict"]
    if not isinstance(weights, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                   for k, v in weights.items()):
        raise NemoFormatError(f"{name}: not a state dict (names -> tensors), got {type(weights).__name__}")
    for key, value in weights.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise NemoFormatError(f"{name}: tensor {key!r} holds NaN/inf values; the model would decode garbage")
    return dict(weights)


def _load_yaml(data: bytes, name: str) -> dict:
    """A YAML mapping from a member's bytes; NemoFormatError naming ``name`` otherwise."""
    try:
        value = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise NemoFormatError(f"{name}: not UTF-8 text (byte {err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise NemoFormatError(f"{name}:{where} not valid YAML ({problem})") from None
    if not isinstance(value, dict):
        raise NemoFormatError(f"{name}: the config must be a mapping, got {type(value).__name__}")
    return value


def read_nemo(path: str | Path) -> NemoArchive:
    """Read a .nemo archive fully into memory (weights loaded with ``weights_only=True``).

    Nothing is extracted; every member must be a regular file with a safe name (see
    :mod:`myna.archive`; folders are passed over).

    Raises:
        NemoFormatError: naming the file (and member) for anything unreadable, truncated or unsafe.
    """
    path = Path(path)
    if not path.is_file():
        raise NemoFormatError(f"{path}: no such file")
    members: dict[str, bytes] = {}
    member = None
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isdir():
                    continue
                name = safe_member_name(member, path)
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                if len(data) != member.size:
                    raise NemoFormatError(f"{path}: member {member.name!r} is truncated "
                                          f"({len(data)} of {member.size} bytes)")
                if name in members:
                    raise NemoFormatError(f"{path}: member {name!r} appears twice")
                members[name] = data
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        at = f" at member {member.name!r}" if member is not None else ""
        detail = str(err).strip().splitlines()[0].rstrip(":") if str(err).strip() else type(err).__name__
        raise NemoFormatError(f"{path}: not a readable .nemo (tar) archive{at} ({detail})") from None
    except UnsafeArchiveError as err:
        raise NemoFormatError(str(err)) from None
    if CONFIG_MEMBER not in members:
        raise NemoFormatError(f"{path}: no {CONFIG_MEMBER} inside")
    if WEIGHTS_MEMBER not in members:
        raise NemoFormatError(f"{path}: no {WEIGHTS_MEMBER} inside")
    config = _load_yaml(members.pop(CONFIG_MEMBER), f"{path} member {CONFIG_MEMBER}")
    state_dict = _load_weights(members.pop(WEIGHTS_MEMBER), f"{path} member {WEIGHTS_MEMBER}")
    myna_config = members.pop(MYNA_CONFIG_MEMBER, None)
    myna_weights = members.pop(MYNA_WEIGHTS_MEMBER, None)
    return NemoArchive(config=config, state_dict=state_dict, artifacts=members,
                       myna_config=_load_yaml(myna_config, f"{path} member {MYNA_CONFIG_MEMBER}")
                       if myna_config else None,
                       myna_state_dict=_load_weights(myna_weights, f"{path} member {MYNA_WEIGHTS_MEMBER}")
                       if myna_weights else {})


def write_nemo(path: str | Path, config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor],
               artifacts: Mapping[str, bytes | str | Path] = ()) -> Path:
    """Write an uncompressed .nemo tar atomically (temp file in the same folder, then rename).

    Args:
        path: destination file.
        config: model config (plain dict); artifact references in it should read ``nemo:<name>``.
        state_dict: weights, saved with ``torch.save``.
        artifacts: member name -> bytes or a file path to copy in.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp_name, "w") as tar:
            def add(name: str, data: bytes) -> None:
                info = tarfile.TarInfo("./" + name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

            add(CONFIG_MEMBER, yaml.safe_dump(dict(config), sort_keys=False).encode("utf-8"))
            with tempfile.TemporaryFile(dir=path.parent) as weights:  # on disk: no copy of the weights in memory
                torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, weights)
                info = tarfile.TarInfo("./" + WEIGHTS_MEMBER)
                info.size = weights.tell()
                weights.seek(0)
                tar.addfile(info, weights)
            for name, data in dict(artifacts).items():
                add(name, data if isinstance(data, bytes) else Path(data).read_bytes())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _weights_bytes(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
    return buffer.getvalue()


# ---- tokenizer members ---------------------------------------------------------------------------
def tokenizer_files(archive: NemoArchive, path: str | Path = "") -> dict[str, bytes]:
    """The tokenizer folder inside an archive: file name (``tokenizer.model``, ``tokenizer.vocab``,
    ``vocab.txt``) -> bytes, for each ``nemo:`` reference of the config's ``tokenizer`` section.

    Raises:
        ValueError: naming ``path`` when ``tokenizer.model_path`` is not a member of the archive.
    """
    tok_cfg = (archive.myna_config or archive.config).get("tokenizer") or {}
    model_ref = str(tok_cfg.get("model_path") or "")
    if not model_ref.startswith("nemo:"):
        raise ValueError(f"{path}: tokenizer.model_path={model_ref!r} does not reference a file inside the archive")
    if model_ref[len("nemo:"):] not in archive.artifacts:
        raise ValueError(f"{path}: the archive has no tokenizer member {model_ref[len('nemo:'):]!r}")
    files = {}
    for key, name in TOKENIZER_KEYS.items():
        ref = str(tok_cfg.get(key) or "")
        if ref.startswith("nemo:") and ref[len("nemo:"):] in archive.artifacts:
            files[name] = archive.artifacts[ref[len("nemo:"):]]
    return files


def _tokenizer_artifacts(tokenizer, tmp: Path) -> dict[str, Path]:
    """tokenizer.model, tokenizer.vocab (piece<TAB>score) and NeMo's vocab.txt, written to ``tmp``."""
    from myna.text.tokenizer import write_vocab_txt

    sp = getattr(tokenizer, "_sp", None)
    if sp is None:
        raise ValueError(f"a .nemo needs a SentencePiece tokenizer, not {type(tokenizer).__name__}")
    model_file = tmp / "tokenizer.model"
    source = Path(getattr(tokenizer, "model_path", "") or "")
    if source.is_file():
        model_file.write_bytes(source.read_bytes())
    else:  # a tokenizer read from an archive lives in memory only
        model_file.write_bytes(sp.serialized_model_proto())
    vocab_file = tmp / "tokenizer.vocab"
    vocab_file.write_text("".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.get_piece_size())),
                          encoding="utf-8")
    write_vocab_txt(vocab_file, tmp / "vocab.txt")
    return {"tokenizer.model": model_file, "tokenizer.vocab": vocab_file, "vocab.txt": tmp / "vocab.txt"}


# ---- models in -------------------------------------------------------------------------------------
def find_model_file(path: str | Path) -> Path:
    """``path`` itself for a file; for a run folder (``myna train``'s ``exp_dir``) its final model,
    ``<name>.nemo`` with ``name`` from its ``config.yaml`` (or the folder's only ``.nemo``).

    Raises:
        FileNotFoundError: naming the folder when it holds no final model (or several, no config).
    """
    path = Path(path)
    if not path.is_dir():
        return path
    config = path / "config.yaml"
    if config.is_file():
        settings = _load_yaml(config.read_bytes(), str(config))
        name = settings.get("name")
        if name and (path / f"{name}.nemo").is_file():
            return path / f"{name}.nemo"
    candidates = sorted(path.glob("*.nemo"))
    if len(candidates) == 1:
        return candidates[0]
    found = f": it has {', '.join(c.name for c in candidates)}" if candidates else ""
    raise FileNotFoundError(f"{path}: no final model <name>.nemo of a myna run folder{found}")


def load_nemo(path: str | Path, map_location: str | torch.device = "cpu"):
    """Load a ``.nemo`` archive (NeMo's or myna's), or a run folder's final model; eval mode.

    The model's ``config`` attribute holds the ``model:`` config it was built from.

    Raises:
        ValueError: naming the file for an unsupported model class, a missing tokenizer or
            weights that do not fit the config (missing / unexpected / mis-shaped keys are listed).
    """
    path = find_model_file(path)
    archive = read_nemo(path)
    cfg = archive.myna_config if archive.myna_config is not None else archive.config
    target = cfg.get("target")
    if target is not None and target not in MODEL_CLASSES:
        raise ValueError(f"{path}: model class {target!r} is not supported; supported: {sorted(MODEL_CLASSES)}")
    tokenizer = None if MODEL_CLASSES.get(target) in PRETRAINING_KINDS else _archive_tokenizer(archive, cfg, path)
    model_cfg = {k: v for k, v in cfg.items() if k not in RUN_ONLY_SECTIONS}
    try:
        model = build_model(model_cfg, tokenizer)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    _load_state(model, {**archive.state_dict, **archive.myna_state_dict}, path)
    model.to(map_location)
    model.eval()
    model.config = cfg
    return model


def _archive_tokenizer(archive: NemoArchive, cfg: Mapping, path: Path):
    """The tokenizer an archive carries: SentencePiece (NeMo's members) or characters (``vocab.json``)."""
    tok_cfg = cfg.get("tokenizer") or {}
    with tempfile.TemporaryDirectory(prefix="myna-tokenizer-") as tmp:
        if tok_cfg.get("type") == "char":
            from myna.text.characters import CharacterTokenizer

            for key in ("vocab_path", "config_path"):
                ref = str(tok_cfg.get(key) or "")
                if ref.startswith("nemo:") and ref[len("nemo:"):] in archive.artifacts:
                    (Path(tmp) / ref[len("nemo:"):]).write_bytes(archive.artifacts[ref[len("nemo:"):]])
            try:
                return CharacterTokenizer.from_folder(tmp)
            except ValueError as err:
                raise ValueError(f"{path}: the character tokenizer is missing or unreadable ({err})") from None
        files = tokenizer_files(archive, path)
        (Path(tmp) / "tokenizer.model").write_bytes(files["tokenizer.model"])
        try:
            return load_tokenizer(Path(tmp) / "tokenizer.model")  # SentencePiece keeps the model in memory
        except (RuntimeError, OSError, ValueError) as err:
            raise NemoFormatError(f"{path}: the tokenizer member is not a SentencePiece model "
                                  f"({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None


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


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a ``.nemo`` (myna-only tensors included) or of a Lightning ``.ckpt``.

    Lightning checkpoints of myna's training task prefix every key with ``model.``; it is removed.
    """
    path = Path(path)
    if path.suffix == ".nemo":
        archive = read_nemo(path)
        return {**archive.state_dict, **archive.myna_state_dict}
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    checkpoint = load_tensor_file(path)
    if not isinstance(checkpoint, Mapping):
        raise NemoFormatError(f"{path}: not a checkpoint (a mapping), got {type(checkpoint).__name__}")
    state = checkpoint.get("state_dict", checkpoint)
    if state and all(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items()}
    return state


# ---- models out ------------------------------------------------------------------------------------
def _model_section(config: DictConfig | Mapping) -> dict[str, Any]:
    full = OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else copy.deepcopy(dict(config))
    return dict(full.get("model", full)) if "encoder" not in full else full


def save_nemo(model, path: str | Path, config: DictConfig | Mapping | None = None) -> Path:
    """Write ``model`` as a ``.nemo`` that NeMo 3.0 restores and :func:`load_nemo` reads back whole.

    Args:
        model: a myna ``TransducerModel`` (RNN-T or hybrid) or ``CTCModel`` with a SentencePiece
            ``tokenizer``.
        path: destination file (written atomically).
        config: the model's config (``model:`` section or a whole recipe); defaults to
            ``model.config``, which :func:`load_nemo` sets.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: no config, an unsupported model class, or no SentencePiece tokenizer.
    """
    if config is None:
        config = getattr(model, "config", None)
    if config is None:
        raise ValueError("save_nemo: the model has no .config; pass config= (the model: section it was built from)")
    tokenizer = getattr(model, "tokenizer", None)
    source = _model_section(config)
    if model_kind(source) == "ssl":
        return _save_ssl(model, path, source)
    if not nemo_restorable(source, tokenizer):
        return _save_myna_archive(model, path, source, tokenizer)
    if tokenizer is None:
        raise ValueError("save_nemo: the model has no tokenizer; NeMo's BPE models need one")
    nemo_cfg = nemo_config(model, source)
    myna_cfg = {k: v for k, v in source.items() if k not in RUN_ONLY_SECTIONS}
    myna_cfg["target"] = nemo_cfg["target"]
    myna_cfg["tokenizer"] = {**(myna_cfg.get("tokenizer") or {}), **nemo_cfg["tokenizer"]}
    state = model.state_dict()
    nemo_state = {k: v for k, v in state.items() if not k.startswith(_MYNA_ONLY_WEIGHTS)}
    myna_state = {k: v for k, v in state.items() if k.startswith(_MYNA_ONLY_WEIGHTS)}
    with tempfile.TemporaryDirectory(prefix="myna-export-") as tmp:
        artifacts: dict[str, Any] = dict(_tokenizer_artifacts(tokenizer, Path(tmp)))
        artifacts[MYNA_CONFIG_MEMBER] = yaml.safe_dump(myna_cfg, sort_keys=False).encode("utf-8")
        if myna_state:
            artifacts[MYNA_WEIGHTS_MEMBER] = _weights_bytes(myna_state)
        return write_nemo(path, nemo_cfg, nemo_state, artifacts)


_MYNA_MODEL_TARGETS = {"ctc": "myna.CTCModel", "rnnt": "myna.TransducerModel", "hybrid": "myna.TransducerModel",
                       "wav2vec2_pretraining": "myna.Wav2Vec2PreTrainingModel"}


def nemo_restorable(config: Mapping[str, Any], tokenizer) -> bool:
    """Whether NeMo has a class for every part of a model: its sections' targets are NeMo's and
    its tokenizer is SentencePiece (a wav2vec 2.0 encoder, a character vocabulary or a
    pre-training model make it myna-only)."""
    if model_kind(config) in PRETRAINING_KINDS or hasattr(tokenizer, "word_delimiter_token"):
        return False
    for name in ("preprocessor", "encoder", "spec_augment"):
        section = config.get(name)
        if isinstance(section, Mapping) and section.get("_target_"):
            entry = component(section["_target_"])
            if entry is None or not entry.nemo_target.startswith("nemo."):
                return False
    return True


def _save_myna_archive(model, path: str | Path, source: Mapping[str, Any], tokenizer) -> Path:
    """A model NeMo has no class for, as a myna archive (see the module docstring)."""
    cfg = {k: copy.deepcopy(v) for k, v in source.items() if k not in RUN_ONLY_SECTIONS}
    cfg["target"] = _MYNA_MODEL_TARGETS[model_kind(source)]
    with tempfile.TemporaryDirectory(prefix="myna-export-") as tmp:
        artifacts: dict[str, Any] = {}
        if tokenizer is None:
            cfg.pop("tokenizer", None)
        elif getattr(tokenizer, "_sp", None) is not None:
            artifacts.update(_tokenizer_artifacts(tokenizer, Path(tmp)))
            cfg["tokenizer"] = {"dir": None, "type": "bpe", "model_path": "nemo:tokenizer.model",
                                "vocab_path": "nemo:vocab.txt", "spe_tokenizer_vocab": "nemo:tokenizer.vocab"}
        elif hasattr(tokenizer, "word_delimiter_token"):  # a character vocabulary
            vocab, options = tokenizer.save(Path(tmp))
            artifacts.update({vocab.name: vocab, options.name: options})
            cfg["tokenizer"] = {"dir": None, "type": "char", "vocab_path": f"nemo:{vocab.name}",
                                "config_path": f"nemo:{options.name}"}
        else:
            raise ValueError(f"save_nemo: cannot store a {type(tokenizer).__name__} in an archive")
        return write_nemo(path, cfg, model.state_dict(), artifacts)


# Model-level keys of NeMo's SpeechEncDecSelfSupervisedModel.
_NEMO_SSL_KEYS = ("sample_rate", "preprocessor", "spec_augment", "encoder", "decoder_out", "loss_list", "decoder",
                  "loss", "dropout_features", "dropout_features_q", "feature_penalty")


def _save_ssl(model, path: str | Path, source: Mapping[str, Any]) -> Path:
    """A self-supervised model as NeMo's ``SpeechEncDecSelfSupervisedModel``: NeMo's class, its
    model keys (no data or run sections), each ``_target_`` section without myna-only keys, and the
    state dict under NeMo's names (``decoder_losses.<name>.decoder/loss.*``)."""
    cfg = {k: copy.deepcopy(source[k]) for k in _NEMO_SSL_KEYS if source.get(k) is not None}
    if cfg.get("loss_list"):
        cfg.pop("decoder", None)
        cfg.pop("loss", None)
        for name, entry in cfg["loss_list"].items():
            for part in ("decoder", "loss"):
                entry[part] = _nemo_section(entry[part], f"model.loss_list.{name}.{part}")
    for name in ("preprocessor", "spec_augment", "encoder"):
        if cfg.get(name):
            cfg[name] = _nemo_section(cfg[name], f"model.{name}")
    cfg["target"] = NEMO_MODEL_TARGETS["ssl"]
    return write_nemo(path, cfg, model.state_dict(), {})


def _nemo_section(section: Any, where: str) -> Any:
    """A ``_target_`` section with NeMo's class path and without myna-only keys."""
    if not isinstance(section, Mapping):
        return section
    section = dict(section)
    entry = component(section.get("_target_", ""))
    if entry is None:
        raise ValueError(f"save_nemo: {where}._target_={section.get('_target_')!r} has no NeMo counterpart")
    for key in entry.myna_only:
        section.pop(key, None)
    section["_target_"] = entry.nemo_target
    return section


def nemo_config(model, config: DictConfig | Mapping) -> dict[str, Any]:
    """NeMo 3.0 model config (plain dict) for ``model`` from its myna config.

    Args:
        model: the built myna model (sizes are read from it, not trusted from the config).
        config: a ``model:`` section, or a whole recipe that has one.
    """
    src = _model_section(config)
    kind = model_kind(src)
    cfg = {k: copy.deepcopy(src[k]) for k in _NEMO_MODEL_KEYS if k in src}
    cfg["preprocessor"] = _nemo_section({"_target_": "AudioToMelSpectrogramPreprocessor", **(cfg.get("preprocessor") or {})},
                                        "model.preprocessor")
    if cfg.get("spec_augment"):
        cfg["spec_augment"] = _nemo_section({"_target_": "SpectrogramAugmentation", **cfg["spec_augment"]},
                                            "model.spec_augment")
    cfg["encoder"] = _nemo_section(cfg["encoder"], "model.encoder")
    vocab = [model.tokenizer.id_to_piece(i) for i in range(model.tokenizer.vocab_size)]
    cfg["tokenizer"] = {"dir": None, "type": "bpe", "model_path": "nemo:tokenizer.model",
                        "vocab_path": "nemo:vocab.txt", "spe_tokenizer_vocab": "nemo:tokenizer.vocab"}
    ctc_head = {"_target_": component("ConvASRDecoder").nemo_target, "feat_in": model.encoder.output_dim,
                "num_classes": len(vocab), "vocabulary": vocab}
    if kind == "ctc":
        cfg["decoder"] = ctc_head
        cfg["decoding"] = {"strategy": "greedy_batch"}
        cfg.pop("joint", None)
        cfg.pop("loss", None)
    else:
        cfg["decoder"] = {**_nemo_section(cfg["decoder"], "model.decoder"), "vocab_size": len(vocab)}
        joint = _nemo_section(cfg["joint"], "model.joint")
        joint["jointnet"] = {**joint.get("jointnet", {}), "encoder_hidden": model.joint.encoder_hidden,
                             "pred_hidden": model.joint.pred_hidden}
        joint.update(num_classes=len(vocab), vocabulary=vocab)
        cfg["joint"] = joint
        # NeMo's RNN-T models read model_defaults (the sizes its example configs interpolate).
        cfg["model_defaults"] = {**(cfg.get("model_defaults") or {}), "enc_hidden": model.joint.encoder_hidden,
                                 "pred_hidden": model.joint.pred_hidden, "joint_hidden": model.joint.joint_hidden}
        strategy = (cfg.get("decoding") or {}).get("strategy", "greedy_batch")
        cfg["decoding"] = {"strategy": strategy if strategy in _NEMO_RNNT_STRATEGIES else "greedy_batch",
                           "greedy": {"max_symbols": int(model.max_symbols_per_step)}}
        loss = cfg.get("loss") or {}
        cfg["loss"] = {"loss_name": loss.get("loss_name", "default")}
        if "warprnnt_numba_kwargs" in loss:
            cfg["loss"]["warprnnt_numba_kwargs"] = loss["warprnnt_numba_kwargs"]
        if kind == "hybrid":
            aux = dict(cfg.get("aux_ctc") or {})
            aux["ctc_loss_weight"] = float(model.loss_config.ctc_weight)
            aux["decoder"] = ctc_head
            aux.setdefault("decoding", {"strategy": "greedy_batch"})
            cfg["aux_ctc"] = aux
    # NeMo's transcribe() builds its loader from validation_ds; data paths stay empty.
    sample_rate = int(src.get("sample_rate") or model.preprocessor.sample_rate)
    for split in ("train_ds", "validation_ds", "test_ds"):
        cfg[split] = {"manifest_filepath": None, "sample_rate": sample_rate, "batch_size": 16,
                      "shuffle": split == "train_ds", "num_workers": 0, "pin_memory": False,
                      "use_start_end_token": False}
    cfg["target"] = NEMO_MODEL_TARGETS[kind]
    cfg["nemo_version"] = "3.0.0"
    return cfg


def export_nemo_file(model_path: str | Path, out_path: str | Path) -> Path:
    """``myna export-nemo``: load a myna (or NeMo) archive and write it NeMo-restorable to ``out_path``."""
    return save_nemo(load_nemo(model_path), out_path)
