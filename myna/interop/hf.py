"""Hugging Face wav2vec 2.0 folders in and out (``save_pretrained`` / ``from_pretrained`` layout).

A folder holds ``config.json`` and the weights (``model.safetensors``, ``pytorch_model.bin`` read
with ``weights_only=True``, or their sharded ``*.index.json`` forms), plus optionally
``preprocessor_config.json`` (the feature extractor: ``do_normalize``, ``return_attention_mask``,
``sampling_rate``) and the CTC tokenizer's ``vocab.json`` / ``tokenizer_config.json``.

:func:`read_hf_folder` gives the config, the state dict and the extra files; :func:`hf_to_myna`
turns them into a myna (NeMo-shaped) model config and a state dict with myna's keys;
:func:`myna_to_hf` and :func:`write_hf_folder` go back. :func:`load_hf` (what ``myna.load`` runs
on such a folder) builds the model through the config adapter; :func:`save_hf` writes one. Supported architectures: ``Wav2Vec2ForCTC``, ``Wav2Vec2ForPreTraining`` and
``Wav2Vec2Model`` (encoder only).

Key mapping (the encoder keeps HF's names below its prefix):

============================================  ===============================================
Hugging Face                                  myna
============================================  ===============================================
``wav2vec2.*`` (``*`` for ``Wav2Vec2Model``)   ``encoder.*``
``lm_head.weight`` (V, H), ``.bias``          ``decoder.decoder_layers.0.weight`` (V, H, 1), ``.bias``
``quantizer.codevectors``                     ``quantizer.vars``
``quantizer.weight_proj.*``, ``project_*``    unchanged
``...pos_conv_embed.conv.weight_g/_v``        ``...conv.parametrizations.weight.original0/1``
============================================  ===============================================
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

__all__ = ["HFFolder", "ARCHITECTURES", "is_hf_folder", "read_hf_folder", "hf_to_myna", "myna_to_hf",
           "write_hf_folder", "HFFormatError", "load_hf", "save_hf", "read_hf_weights", "finish_loading"]

ARCHITECTURES = {"Wav2Vec2ForCTC": "ctc", "Wav2Vec2ForPreTraining": "pretraining", "Wav2Vec2Model": "encoder"}
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
PROCESSOR_FILE = "processor_config.json"
TOKENIZER_FILES = ("vocab.json", "tokenizer_config.json", "special_tokens_map.json")
_PREFIX = "wav2vec2."
_HEAD = "decoder.decoder_layers.0."
_WN_OLD = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}

# HF config keys that only other heads or other model types read.
_IGNORED_HF_KEYS = {"use_weighted_layer_sum", "classifier_proj_size", "tdnn_dim", "tdnn_kernel", "tdnn_dilation",
                    "xvector_output_dim", "num_adapter_layers", "adapter_kernel_size", "adapter_stride",
                    "output_hidden_size", "ctc_loss_reduction", "ctc_zero_infinity", "initializer_range"}


class HFFormatError(ValueError):
    """The folder is not a readable Hugging Face wav2vec 2.0 checkpoint."""


@dataclass
class HFFolder:
    """A read ``save_pretrained`` folder.

    Attributes:
        path: the folder. config: ``config.json``. state_dict: the weights (HF keys).
        architecture: ``Wav2Vec2ForCTC`` / ``Wav2Vec2ForPreTraining`` / ``Wav2Vec2Model``.
        feature_extractor: the preprocessor settings (``preprocessor_config.json``, or the
            ``feature_extractor`` part of ``processor_config.json``; {} when absent).
        has_vocabulary: the folder holds a character ``vocab.json``.
    """

    path: Path
    config: dict
    state_dict: dict[str, torch.Tensor]
    architecture: str
    feature_extractor: dict = field(default_factory=dict)
    has_vocabulary: bool = False


def is_hf_folder(path: str | os.PathLike) -> bool:
    """A folder with a ``config.json`` whose ``model_type`` is ``wav2vec2``."""
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "wav2vec2"
    except (json.JSONDecodeError, OSError):
        return False


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise HFFormatError(f"{path}: not valid JSON ({err})") from err


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    def load_one(path: Path) -> dict[str, torch.Tensor]:
        if path.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise HFFormatError(f"{path}: reading safetensors needs the 'safetensors' package "
                                    "(pip install 'myna[hf]')") from None
            return load_file(str(path))
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises UnpicklingError for anything but plain tensors
            raise HFFormatError(f"{path}: not a plain tensor file readable with weights_only=True ({err})") from err
        return dict(state)

    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return load_one(folder / name)
        index = folder / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load_one(folder / shard))
            return state
    raise HFFormatError(f"{folder}: no model.safetensors or pytorch_model.bin (nor a sharded index)")


def read_hf_folder(path: str | os.PathLike) -> HFFolder:
    """Read a wav2vec 2.0 ``save_pretrained`` folder.

    :raises HFFormatError: naming the folder and what is missing or unsupported.
    """
    folder = Path(path)
    if not (folder / CONFIG_FILE).is_file():
        raise HFFormatError(f"{folder}: no {CONFIG_FILE}; not a Hugging Face model folder")
    config = _read_json(folder / CONFIG_FILE)
    if config.get("model_type") != "wav2vec2":
        raise HFFormatError(f"{folder}: model_type={config.get('model_type')!r}; only 'wav2vec2' is supported")
    archs = config.get("architectures") or ["Wav2Vec2Model"]
    architecture = archs[0]
    if architecture not in ARCHITECTURES:
        raise HFFormatError(f"{folder}: architecture {architecture!r} is not supported; supported: {sorted(ARCHITECTURES)}")
    feature_extractor = {}
    if (folder / PREPROCESSOR_FILE).is_file():
        feature_extractor = _read_json(folder / PREPROCESSOR_FILE)
    elif (folder / PROCESSOR_FILE).is_file():
        feature_extractor = dict(_read_json(folder / PROCESSOR_FILE).get("feature_extractor") or {})
    return HFFolder(folder, config, _read_weights(folder), architecture, feature_extractor,
                    (folder / "vocab.json").is_file())


# ---- HF -> myna -----------------------------------------------------------------------------------

def _encoder_section(config: Mapping[str, Any], feature_extractor: Mapping[str, Any], where: str) -> dict:
    for key, expected in (("hidden_act", "gelu"), ("feat_extract_activation", "gelu")):
        if config.get(key, expected) != expected:
            raise HFFormatError(f"{where}: {key}={config[key]!r}; only {expected!r} is supported")
    if config.get("add_adapter"):
        raise HFFormatError(f"{where}: add_adapter=true (a conv adapter after the encoder) is not supported")
    if config.get("adapter_attn_dim") is not None:
        raise HFFormatError(f"{where}: adapter_attn_dim (per-language attention adapters) is not supported")
    if config.get("position_embeddings_type") not in (None, "conv"):
        raise HFFormatError(f"{where}: position_embeddings_type={config['position_embeddings_type']!r} "
                            "is not wav2vec 2.0's positional convolution")
    masks_on = bool(config.get("apply_spec_augment", True))
    norm = config.get("feat_extract_norm", "group")
    return {
        "_target_": "myna.Wav2Vec2Encoder",
        "hidden_size": config.get("hidden_size", 768),
        "num_layers": config.get("num_hidden_layers", 12),
        "num_heads": config.get("num_attention_heads", 12),
        "intermediate_size": config.get("intermediate_size", 3072),
        "conv_dim": list(config.get("conv_dim", [512] * 7)),
        "conv_kernel": list(config.get("conv_kernel", [10, 3, 3, 3, 3, 2, 2])),
        "conv_stride": list(config.get("conv_stride", [5, 2, 2, 2, 2, 2, 2])),
        "feat_extract_norm": norm,
        "conv_bias": bool(config.get("conv_bias", False)),
        "pos_conv_kernel": config.get("num_conv_pos_embeddings", 128),
        "pos_conv_groups": config.get("num_conv_pos_embedding_groups", 16),
        "layer_norm_first": bool(config.get("do_stable_layer_norm", False)),
        "hidden_dropout": config.get("hidden_dropout", 0.1),
        "attention_dropout": config.get("attention_dropout", 0.1),
        "activation_dropout": config.get("activation_dropout", 0.1),
        "feat_proj_dropout": config.get("feat_proj_dropout", 0.0),
        "layerdrop": config.get("layerdrop", 0.1),
        "mask_time_prob": config.get("mask_time_prob", 0.05) if masks_on else 0.0,
        "mask_time_length": config.get("mask_time_length", 10),
        "mask_time_min_masks": config.get("mask_time_min_masks", 2),
        "mask_feature_prob": config.get("mask_feature_prob", 0.0) if masks_on else 0.0,
        "mask_feature_length": config.get("mask_feature_length", 10),
        "mask_feature_min_masks": config.get("mask_feature_min_masks", 0),
        "layer_norm_eps": config.get("layer_norm_eps", 1e-5),
        # HF's feature extractor gives an attention mask to layer-norm models only (by default).
        "use_attention_mask": bool(feature_extractor.get("return_attention_mask", norm == "layer")),
    }


def hf_to_myna(folder: HFFolder) -> tuple[dict, dict[str, torch.Tensor], list[str]]:
    """Translate a read folder into (myna ``model:`` config, state dict with myna keys, notes).

    The config's ``target`` is ``myna.CTCModel`` (CTC; its ``tokenizer`` section points at the
    folder's ``vocab.json``) or ``myna.Wav2Vec2PreTrainingModel`` (pre-training; encoder-only
    folders get ``quantizer: null``). Notes list what was kept from myna's initialisation
    (e.g. a ``masked_spec_embed`` the file does not carry).
    """
    where = str(folder.path)
    config, kind = folder.config, ARCHITECTURES[folder.architecture]
    fe = folder.feature_extractor
    encoder = _encoder_section(config, fe, where)
    model: dict[str, Any] = {
        "sample_rate": int(fe.get("sampling_rate", 16000)),
        "preprocessor": {"_target_": "myna.WaveformFeaturizer", "sample_rate": int(fe.get("sampling_rate", 16000)),
                         "normalize": bool(fe.get("do_normalize", True))},
        "encoder": encoder,
    }
    notes: list[str] = []
    if kind == "ctc":
        if not folder.has_vocabulary:
            raise HFFormatError(f"{where}: a Wav2Vec2ForCTC folder needs its vocab.json to decode")
        encoder["final_dropout"] = config.get("final_dropout", 0.1)
        vocab_size = int(config["vocab_size"])
        model.update(target="myna.CTCModel",
                     tokenizer={"dir": where, "type": "char"},
                     decoder={"_target_": "nemo.collections.asr.modules.ConvASRDecoder",
                              "feat_in": encoder["hidden_size"], "num_classes": vocab_size})
    else:
        model["target"] = "myna.Wav2Vec2PreTrainingModel"
        if kind == "pretraining":
            model["quantizer"] = {"num_vars": config.get("num_codevectors_per_group", 320),
                                  "groups": config.get("num_codevector_groups", 2),
                                  "vq_dim": config.get("codevector_dim", 256),
                                  "temp": [2.0, 0.5, 0.999995], "combine_groups": False, "perplexity_eps": 0.0}
            model["final_dim"] = config.get("proj_codevector_dim", 256)
            model["dropout_features"] = config.get("feat_quantizer_dropout", 0.0)
            model["masking"] = {"style": "hf", "mask_prob": config.get("mask_time_prob", 0.05),
                                "mask_length": config.get("mask_time_length", 10),
                                "min_masks": config.get("mask_time_min_masks", 2), "require_same_masks": False}
            model["contrastive"] = {"num_negatives": config.get("num_negatives", 100),
                                    "logit_temp": config.get("contrastive_logits_temperature", 0.1),
                                    "diversity_weight": config.get("diversity_loss_weight", 0.1),
                                    "feature_penalty_weight": 0.0, "eval_perplexity": "code"}
        else:
            model["quantizer"] = None
    state = {}
    prefix = "" if kind == "encoder" else _PREFIX
    for key, value in folder.state_dict.items():
        if kind != "encoder" and not key.startswith(_PREFIX):
            if key == "lm_head.weight":
                state[_HEAD + "weight"] = value.unsqueeze(-1)
            elif key == "lm_head.bias":
                state[_HEAD + "bias"] = value
            elif key == "quantizer.codevectors":
                state["quantizer.vars"] = value
            else:
                state[key] = value
            continue
        inner = key[len(prefix):]
        for old, new in _WN_OLD.items():
            if inner.endswith("pos_conv_embed.conv." + old):
                inner = inner[: -len(old)] + new
        state["encoder." + inner] = value
    if "encoder.masked_spec_embed" not in state:
        notes.append("encoder.masked_spec_embed: not in the file (HF omits it when all mask probabilities are 0); "
                      "kept myna's initial value")
    return model, state, notes


# ---- myna -> HF -----------------------------------------------------------------------------------

def myna_to_hf(model_cfg: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor], blank_id: Optional[int] = None
               ) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(HF ``config.json``, HF state dict, ``preprocessor_config.json``) for a myna wav2vec 2.0 model.

    :param model_cfg: the model's ``model:`` config (target ``myna.CTCModel`` with a
        Wav2Vec2Encoder, or ``myna.Wav2Vec2PreTrainingModel``).
    :param state_dict: the model's weights (myna keys).
    :param blank_id: a CTC model's blank class (HF's ``pad_token_id``); None: the last class.
    :raises ValueError: for what HF's Wav2Vec2 classes cannot express (an Hourglass encoder, a
        shared codebook, a Transducer model).
    """
    enc = dict(model_cfg["encoder"])
    if str(enc.get("_target_", "")).split(".")[-1] != "Wav2Vec2Encoder":
        raise ValueError(f"only wav2vec 2.0 encoders export to Hugging Face, not {enc.get('_target_')!r}")
    if enc.get("hourglass"):
        raise ValueError("Hugging Face's Wav2Vec2 has no Hourglass Transformer; this model cannot be exported "
                         f"(hourglass={enc['hourglass']!r})")
    target = str(model_cfg.get("target", ""))
    config: dict[str, Any] = {
        "model_type": "wav2vec2",
        "hidden_size": enc.get("hidden_size", 768), "num_hidden_layers": enc.get("num_layers", 12),
        "num_attention_heads": enc.get("num_heads", 12), "intermediate_size": enc.get("intermediate_size", 3072),
        "hidden_act": "gelu", "feat_extract_activation": "gelu",
        "conv_dim": list(enc.get("conv_dim", [512] * 7)), "conv_kernel": list(enc.get("conv_kernel", [10, 3, 3, 3, 3, 2, 2])),
        "conv_stride": list(enc.get("conv_stride", [5, 2, 2, 2, 2, 2, 2])),
        "num_feat_extract_layers": len(enc.get("conv_dim", [512] * 7)),
        "feat_extract_norm": enc.get("feat_extract_norm", "group"), "conv_bias": bool(enc.get("conv_bias", False)),
        "num_conv_pos_embeddings": enc.get("pos_conv_kernel", 128),
        "num_conv_pos_embedding_groups": enc.get("pos_conv_groups", 16),
        "do_stable_layer_norm": bool(enc.get("layer_norm_first", False)),
        "hidden_dropout": enc.get("hidden_dropout", 0.1), "attention_dropout": enc.get("attention_dropout", 0.1),
        "activation_dropout": enc.get("activation_dropout", 0.0), "feat_proj_dropout": enc.get("feat_proj_dropout", 0.0),
        "layerdrop": enc.get("layerdrop", 0.0), "layer_norm_eps": enc.get("layer_norm_eps", 1e-5),
        "final_dropout": enc.get("final_dropout", 0.0),
        "apply_spec_augment": True,
        "mask_time_prob": enc.get("mask_time_prob", 0.0),
        "mask_time_length": enc.get("mask_time_length", 10), "mask_time_min_masks": enc.get("mask_time_min_masks", 2),
        "mask_feature_prob": enc.get("mask_feature_prob", 0.0), "mask_feature_length": enc.get("mask_feature_length", 10),
        "mask_feature_min_masks": enc.get("mask_feature_min_masks", 0),
    }
    pre = dict(model_cfg.get("preprocessor") or {})
    feature_extractor = {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
                         "sampling_rate": int(pre.get("sample_rate", 16000)),
                         "do_normalize": bool(pre.get("normalize", False)), "padding_side": "right",
                         "padding_value": 0.0, "return_attention_mask": bool(enc.get("use_attention_mask", True))}
    state: dict[str, torch.Tensor] = {}
    if target.endswith("CTCModel"):
        weight = state_dict[_HEAD + "weight"]
        config.update(architectures=["Wav2Vec2ForCTC"], vocab_size=int(weight.shape[0]),
                      pad_token_id=int(weight.shape[0] - 1 if blank_id is None else blank_id),
                      ctc_loss_reduction="sum", ctc_zero_infinity=False)
        state["lm_head.weight"] = weight.squeeze(-1)
        state["lm_head.bias"] = state_dict[_HEAD + "bias"]
    elif target.endswith("Wav2Vec2PreTrainingModel"):
        quant = model_cfg.get("quantizer")
        if quant:
            if quant.get("combine_groups"):
                raise ValueError("Hugging Face's quantizer has one codebook per group; combine_groups=true cannot export")
            masking, contrastive = dict(model_cfg.get("masking") or {}), dict(model_cfg.get("contrastive") or {})
            config.update(architectures=["Wav2Vec2ForPreTraining"], num_codevectors_per_group=quant["num_vars"],
                          num_codevector_groups=quant["groups"], codevector_dim=quant["vq_dim"],
                          proj_codevector_dim=model_cfg.get("final_dim", 256),
                          feat_quantizer_dropout=model_cfg.get("dropout_features", 0.1),
                          num_negatives=contrastive.get("num_negatives", 100),
                          contrastive_logits_temperature=contrastive.get("logit_temp", 0.1),
                          diversity_loss_weight=contrastive.get("diversity_weight", 0.1))
            if masking:
                config.update(mask_time_prob=masking.get("mask_prob", 0.65),
                              mask_time_length=masking.get("mask_length", 10),
                              mask_time_min_masks=masking.get("min_masks", 2))
            for key in ("quantizer.weight_proj.weight", "quantizer.weight_proj.bias", "project_hid.weight",
                        "project_hid.bias", "project_q.weight", "project_q.bias"):
                state[key] = state_dict[key]
            state["quantizer.codevectors"] = state_dict["quantizer.vars"]
        else:
            config["architectures"] = ["Wav2Vec2Model"]
    else:
        raise ValueError(f"model target {target!r} has no Hugging Face counterpart (CTC and pre-training models do)")
    prefix = "" if config["architectures"] == ["Wav2Vec2Model"] else _PREFIX
    # HF creates masked_spec_embed only when a mask probability is > 0 (myna always has one).
    keep_mask_embed = config["mask_time_prob"] > 0 or config["mask_feature_prob"] > 0
    for key, value in state_dict.items():
        if key.startswith("encoder.") and (keep_mask_embed or key != "encoder.masked_spec_embed"):
            state[prefix + key[len("encoder."):]] = value
    return config, state, feature_extractor


def write_hf_folder(path: str | os.PathLike, config: Mapping, state_dict: Mapping[str, torch.Tensor],
                    feature_extractor: Optional[Mapping] = None, tokenizer=None) -> Path:
    """Write ``config.json``, ``model.safetensors``, ``preprocessor_config.json`` and, for a
    character tokenizer, ``vocab.json`` + ``tokenizer_config.json`` (HF's names)."""
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise ValueError("writing a Hugging Face folder needs the 'safetensors' package (pip install 'myna[hf]')") from None
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n")
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    tmp = folder / "model.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, folder / "model.safetensors")
    if feature_extractor:
        (folder / PREPROCESSOR_FILE).write_text(json.dumps(dict(feature_extractor), indent=2) + "\n")
    if tokenizer is not None and hasattr(tokenizer, "save") and hasattr(tokenizer, "word_delimiter_token"):
        tokenizer.save(folder)
    return folder


# ---- whole models ---------------------------------------------------------------------------------

def finish_loading(model, state_dict: Mapping[str, torch.Tensor], cfg: dict, path: Path,
                   map_location: str | torch.device = "cpu", optional: tuple[str, ...] = ()):
    """Load ``state_dict`` into ``model`` (every key checked, as for a ``.nemo``), move it, eval mode,
    ``model.config = cfg``. ``optional``: tensors the file may lack; the model keeps its own."""
    from myna.interop.nemo import _load_state

    own = model.state_dict()
    state = dict(state_dict)
    for key in optional:
        if key not in state and key in own:
            state[key] = own[key]
    _load_state(model, state, path)
    model.to(map_location)
    model.eval()
    model.config = cfg
    return model


def load_hf(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """A Hugging Face wav2vec 2.0 folder as a myna model, eval mode: ``Wav2Vec2ForCTC`` -> CTCModel
    (the folder's character vocabulary; its ``transcribe`` applies the folder's feature-extractor
    normalisation), ``Wav2Vec2ForPreTraining`` / ``Wav2Vec2Model`` -> Wav2Vec2PreTrainingModel
    (without a quantizer for the latter).

    :raises HFFormatError: naming the folder and what it cannot express.
    """
    import logging

    from myna.interop.adapter import build_model
    from myna.text.characters import CharacterTokenizer

    path = Path(path)
    folder = read_hf_folder(path)
    cfg, state, notes = hf_to_myna(folder)
    tokenizer = CharacterTokenizer.from_folder(path) if folder.has_vocabulary and cfg["target"] == "myna.CTCModel" else None
    try:
        model = build_model(cfg, tokenizer)
    except ValueError as err:
        raise HFFormatError(f"{path}: {err}") from None
    for note in notes:
        logging.getLogger("myna.interop").info("%s: %s", path, note)
    return finish_loading(model, state, cfg, path, map_location, optional=("encoder.masked_spec_embed",))


def read_hf_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights of an HF wav2vec 2.0 folder under myna's names (``encoder.*``, ``decoder.*``,
    ``quantizer.*``, ``project_*``), for ``init_from_pretrained_model``."""
    return hf_to_myna(read_hf_folder(path))[1]


def save_hf(model, path: str | os.PathLike, config: Optional[Mapping] = None) -> Path:
    """Write a wav2vec 2.0 CTC or pre-training model as a ``save_pretrained`` folder that
    ``transformers``' ``from_pretrained`` loads with the same outputs (character vocabulary
    included). ``config``: its ``model:`` section (default ``model.config``).

    :raises ValueError: for what HF cannot express (an Hourglass encoder, a Transducer model).
    """
    config = config if config is not None else getattr(model, "config", None)
    if config is None:
        raise ValueError("save_hf: the model has no .config; pass config= (the model: section it was built from)")
    if hasattr(config, "items") and not isinstance(config, dict):
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(config, resolve=True)
    model_cfg = dict(config.get("model", config)) if "encoder" not in config else dict(config)
    if "target" not in model_cfg or model_cfg["target"] is None:
        model_cfg["target"] = "myna.CTCModel" if hasattr(model, "ctc_log_probs") else "myna.Wav2Vec2PreTrainingModel"
    if hasattr(model, "joint"):
        raise ValueError("save_hf: Hugging Face's Wav2Vec2 classes have no Transducer head")
    blank = getattr(model, "blank_id", None) if hasattr(model, "ctc_log_probs") else None
    hf_config, state, feature_extractor = myna_to_hf(model_cfg, model.state_dict(), blank_id=blank)
    return write_hf_folder(path, hf_config, state, feature_extractor, getattr(model, "tokenizer", None))
