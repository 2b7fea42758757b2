"""fairseq and NVIDIA DeepLearningExamples (DLE) wav2vec 2.0 checkpoints in.

A checkpoint is a ``torch.save``d dict: the weights under ``model`` (fairseq), ``state_dict``
(DLE) or the dict itself, and the configuration as ``args`` (an ``argparse.Namespace``) or
``cfg`` (fairseq's Hydra ``DictConfig``; the pre-training model's options under ``cfg.model``).
The configuration is read **without unpickling arbitrary objects**: a restricted unpickler
rebuilds tensors and plain containers and turns every other class into an inert record of its
state, which :func:`read_checkpoint` converts to plain dicts. A JSON file beside the checkpoint
(``<stem>_config.json`` or ``<stem>.json`` holding ``{"args": {...}}`` or the args themselves,
as in myna's DLE fixtures) takes precedence.

:func:`fairseq_to_myna` translates the options into a myna pre-training model config (plain or
Hourglass, DLE's ``hourglass_transformer`` / ``hourglass_resample``) and the weights into myna's
keys (spec: ``pos_conv.0`` -> ``pos_conv_embed.conv``, ``self_attn`` -> ``attention``,
``self_attn_layer_norm`` -> ``layer_norm``, ``fc1``/``fc2`` -> ``feed_forward.*``,
``post_extract_proj`` -> ``feature_projection.projection``, ``mask_emb`` ->
``masked_spec_embed``, ``final_proj`` -> ``project_hid``; DLE's fused ``self_attn.qkv`` is split).
Fine-tuned fairseq checkpoints (``w2v_encoder.w2v_model.*``) give their encoder; the CTC
projection and its dictionary are not imported.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import types
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

__all__ = ["read_checkpoint", "parse_conv_feature_layers", "fairseq_to_myna", "FairseqFormatError",
           "is_fairseq_checkpoint", "load_fairseq", "read_fairseq_weights"]

DEFAULT_CONV_LAYERS = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] + [(512, 2, 2)]"


class FairseqFormatError(ValueError):
    """The checkpoint or its configuration cannot be read or is not supported."""


# ---- restricted unpickling -----------------------------------------------------------------------

class _Record:
    """Stands in for an object of a class that is never imported: keeps its arguments and state."""

    _qualname = "?"
    # pickle's NEWOBJ creates records with __new__ alone, so the defaults live on the class
    _args: tuple = ()
    _kwargs: dict = {}
    _state: Any = None

    def __init__(self, *args, **kwargs):
        self._args, self._kwargs, self._state = args, kwargs, None

    def __setstate__(self, state):
        self._state = state

    def __setitem__(self, key, value):  # objects pickled as dict subclasses
        if self._state is None:
            self._state = {}
        self._state[key] = value


_ALLOWED = {
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"),
    ("builtins", "slice"), ("builtins", "range"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"), ("torch", "Size"), ("torch", "device"),
    ("torch._tensor", "_rebuild_from_type_v2"), ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        return type(name, (_Record,), {"_qualname": f"{module}.{name}"})


_restricted_pickle = types.SimpleNamespace(Unpickler=_RestrictedUnpickler, load=pickle.load, __name__="myna_restricted")


def _plain(value: Any) -> Any:
    """Records -> dicts (Namespace attributes, OmegaConf ``_content`` / ``_val``), recursively."""
    if isinstance(value, _Record):
        state = value._state
        if isinstance(state, dict):
            if "_content" in state:  # OmegaConf containers
                return _plain(state["_content"])
            if "_val" in state:  # OmegaConf value nodes
                return _plain(state["_val"])
            return {k: _plain(v) for k, v in state.items() if not str(k).startswith("_")}
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            return _plain(state[1])
        if value._args:
            return _plain(value._args[0]) if len(value._args) == 1 else [_plain(a) for a in value._args]
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _load_restricted(path: Path) -> dict:
    try:
        data = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_restricted_pickle)
    except Exception as err:
        raise FairseqFormatError(f"{path}: cannot read the checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(data, Mapping):
        raise FairseqFormatError(f"{path}: expected a dict at the top, found {type(data).__name__}")
    return dict(data)


def read_checkpoint(path: str | os.PathLike, config: Optional[str | os.PathLike | Mapping] = None
                    ) -> tuple[dict, dict[str, torch.Tensor]]:
    """(options, state dict) of a fairseq / DLE checkpoint.

    :param path: the ``.pt`` file.
    :param config: the options (a dict, or a JSON file with ``{"args": {...}}`` or the args);
        default: ``<stem>_config.json`` / ``<stem>.json`` beside the checkpoint, else the
        checkpoint's own ``args`` / ``cfg.model``.
    :raises FairseqFormatError: naming the file when there are no weights or no options.
    """
    path = Path(path)
    data = _load_restricted(path)
    state = data.get("model", data.get("state_dict", data))
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FairseqFormatError(f"{path}: no state dict of tensors under 'model', 'state_dict' or at the top")
    state = {str(k): v for k, v in state.items()}
    if config is None:
        for candidate in (path.with_name(path.stem + "_config.json"), path.with_suffix(".json")):
            if candidate.is_file():
                config = candidate
                break
    if isinstance(config, (str, os.PathLike)):
        loaded = json.loads(Path(config).read_text())
        args = loaded.get("args", loaded)
    elif isinstance(config, Mapping):
        args = dict(config.get("args", config))
    elif data.get("args") is not None:
        args = _plain(data["args"])
    elif data.get("cfg") is not None:
        cfg = _plain(data["cfg"])
        args = (cfg or {}).get("model") or {}
    else:
        raise FairseqFormatError(f"{path}: the checkpoint carries no 'args' or 'cfg'; give the options as a JSON "
                                 f"file beside it ({path.stem}_config.json)")
    if not isinstance(args, Mapping):
        raise FairseqFormatError(f"{path}: could not read the model options (got {type(args).__name__})")
    args = dict(args)
    if "w2v_args" in args and args["w2v_args"]:  # a fine-tuned model: the pre-training options
        inner = args["w2v_args"]
        inner = inner.get("model", inner) if isinstance(inner, Mapping) else inner
        args = {**dict(inner), "_finetuned": True}
    return args, state


def is_fairseq_checkpoint(path: str | os.PathLike) -> bool:
    """A ``.pt`` file (the suffix fairseq and DLE use)."""
    return Path(path).is_file() and Path(path).suffix == ".pt"


# ---- options -> myna config ----------------------------------------------------------------------

def parse_conv_feature_layers(spec: str) -> list[tuple[int, int, int]]:
    """fairseq's ``conv_feature_layers`` expression (lists of (dim, kernel, stride) tuples joined
    with ``+`` and repeated with ``*``) evaluated without ``eval``.

    >>> parse_conv_feature_layers("[(512,10,5)]+[(512,3,2)]*2")
    [(512, 10, 5), (512, 3, 2), (512, 3, 2)]
    """
    def value(node):
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ValueError("unsupported syntax")

    try:
        layers = value(ast.parse(spec, mode="eval"))
        layers = [tuple(int(x) for x in layer) for layer in layers]
        if not layers or any(len(layer) != 3 for layer in layers):
            raise ValueError("each layer must be (dim, kernel, stride)")
    except (SyntaxError, ValueError, TypeError) as err:
        raise FairseqFormatError(f"conv_feature_layers={spec!r} is not a list of (dim, kernel, stride): {err}") from err
    return layers


def _check_supported(args: Mapping, where: str) -> None:
    unsupported = {
        "quantize_input": False, "target_glu": False, "negatives_from_everywhere": False,
        "cross_sample_negatives": 0, "codebook_negatives": 0, "use_spectrogram_features": False,
        "rotary_embeddings": False,
    }
    for key, fine in unsupported.items():
        if args.get(key, fine) not in (fine, None):
            raise FairseqFormatError(f"{where}: {key}={args[key]!r} is not supported (only {fine!r})")
    if args.get("activation_fn", "gelu") != "gelu":
        raise FairseqFormatError(f"{where}: activation_fn={args['activation_fn']!r}; only 'gelu' is supported")
    if args.get("mask_selection", "static") != "static":
        raise FairseqFormatError(f"{where}: mask_selection={args['mask_selection']!r}; only 'static' spans are supported")
    if args.get("no_mask_overlap"):
        raise FairseqFormatError(f"{where}: no_mask_overlap=true is not supported")


def _model_config(args: Mapping, where: str) -> dict:
    _check_supported(args, where)
    conv = parse_conv_feature_layers(str(args.get("conv_feature_layers") or DEFAULT_CONV_LAYERS))
    hidden = int(args.get("encoder_embed_dim", 768))
    mode = args.get("extractor_mode", "default")
    if mode not in ("default", "layer_norm"):
        raise FairseqFormatError(f"{where}: extractor_mode={mode!r}; expected 'default' or 'layer_norm'")
    encoder = {
        "_target_": "myna.Wav2Vec2Encoder",
        "hidden_size": hidden, "num_layers": int(args.get("encoder_layers", 12)),
        "num_heads": int(args.get("encoder_attention_heads", 12)),
        "intermediate_size": int(args.get("encoder_ffn_embed_dim", 3072)),
        "conv_dim": [c[0] for c in conv], "conv_kernel": [c[1] for c in conv], "conv_stride": [c[2] for c in conv],
        "feat_extract_norm": "group" if mode == "default" else "layer",
        "conv_bias": bool(args.get("conv_bias", False)),
        "pos_conv_kernel": int(args.get("conv_pos", 128)), "pos_conv_groups": int(args.get("conv_pos_groups", 16)),
        "layer_norm_first": bool(args.get("layer_norm_first", False)),
        "hidden_dropout": float(args.get("dropout", 0.1)),
        "attention_dropout": float(args.get("attention_dropout", 0.1)),
        "activation_dropout": float(args.get("activation_dropout", 0.0)),
        "feat_proj_dropout": float(args.get("dropout_input", 0.0)),
        "layerdrop": float(args.get("encoder_layerdrop", 0.0)),
        "hourglass": args.get("hourglass_transformer") or None,
        "hourglass_resample": args.get("hourglass_resample") or "naive",
        "feature_grad_mult": float(args.get("feature_grad_mult", 1.0)),
    }
    final_dim = int(args.get("final_dim", 0)) or hidden
    model: dict[str, Any] = {
        "target": "myna.Wav2Vec2PreTrainingModel",
        "sample_rate": int(args.get("sample_rate", 16000)),
        "preprocessor": {"_target_": "myna.WaveformFeaturizer", "sample_rate": int(args.get("sample_rate", 16000)),
                         "normalize": bool(args.get("normalize", False))},
        "encoder": encoder,
        "final_dim": final_dim,
        "dropout_features": float(args.get("dropout_features", 0.0)),
        "masking": {"style": "fairseq", "mask_prob": float(args.get("mask_prob", 0.65)),
                    "mask_length": int(args.get("mask_length", 10)), "min_masks": 2,
                    "require_same_masks": bool(args.get("require_same_masks", True))},
    }
    weights = list(args.get("loss_weights") or [0.1, 10.0])
    weights += [0.0] * (2 - len(weights))
    model["contrastive"] = {"num_negatives": int(args.get("num_negatives", 100)),
                            "logit_temp": float(args.get("logit_temp", 0.1)),
                            "diversity_weight": float(weights[0]), "feature_penalty_weight": float(weights[1])}
    if args.get("_finetuned") or not args.get("quantize_targets", True):
        model["quantizer"] = None
    else:
        latent_dim = int(args.get("latent_dim", 0))
        temp = args.get("latent_temp", (2.0, 0.5, 0.999995))
        if isinstance(temp, str):
            temp = ast.literal_eval(temp)
        model["quantizer"] = {"num_vars": int(args.get("latent_vars", 320)), "groups": int(args.get("latent_groups", 2)),
                              "vq_dim": latent_dim if latent_dim > 0 else final_dim,
                              "temp": [float(t) for t in temp], "combine_groups": False,
                              "weight_proj_depth": int(args.get("quantizer_depth", 1)),
                              "weight_proj_factor": int(args.get("quantizer_factor", 3))}
    return model


_LAYER_RENAMES = (("self_attn_layer_norm.", "layer_norm."), ("self_attn.", "attention."),
                  ("fc1.", "feed_forward.intermediate_dense."), ("fc2.", "feed_forward.output_dense."))


def _translate_key(key: str) -> Optional[str]:
    m = re.fullmatch(r"feature_extractor\.conv_layers\.(\d+)\.(0|2|2\.1)\.(weight|bias)", key)
    if m:
        part = "conv" if m.group(2) == "0" else "layer_norm"
        return f"encoder.feature_extractor.conv_layers.{m.group(1)}.{part}.{m.group(3)}"
    if key.startswith("layer_norm."):
        return "encoder.feature_projection." + key
    if key.startswith("post_extract_proj."):
        return "encoder.feature_projection.projection." + key[len("post_extract_proj."):]
    if key == "mask_emb":
        return "encoder.masked_spec_embed"
    if key.startswith("encoder.pos_conv.0."):
        rest = key[len("encoder.pos_conv.0."):]
        rest = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}.get(rest, rest)
        return "encoder.encoder.pos_conv_embed.conv." + rest
    m = re.fullmatch(r"encoder\.(layers|hourglass_layers|post_layers)\.(\d+)\.(.+)", key)
    if m:
        rest = m.group(3)
        for old, new in _LAYER_RENAMES:
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        return f"encoder.encoder.{m.group(1)}.{m.group(2)}.{rest}"
    if key.startswith(("encoder.layer_norm.", "encoder.downsample_layer.", "encoder.upsample_layer.")):
        return "encoder." + key
    if key.startswith(("quantizer.", "project_q.")):
        return key
    if key.startswith("final_proj."):
        return "project_hid." + key[len("final_proj."):]
    return None


def fairseq_to_myna(args: Mapping, state_dict: Mapping[str, torch.Tensor], where: str = "checkpoint"
                    ) -> tuple[dict, dict[str, torch.Tensor], list[str]]:
    """(myna ``model:`` config, state dict with myna keys, notes) from fairseq / DLE options and weights.

    :raises FairseqFormatError: for unsupported options or weights that map nowhere.
    """
    model = _model_config(args, where)
    state: dict[str, torch.Tensor] = {}
    notes: list[str] = []
    unknown = []
    for key, value in state_dict.items():
        if key.startswith("w2v_encoder."):
            if key.startswith("w2v_encoder.w2v_model."):
                key = key[len("w2v_encoder.w2v_model."):]
            else:
                notes.append(f"{key}: the fine-tuned output layer is not imported")
                continue
        fused = re.fullmatch(r"(encoder\.(?:layers|hourglass_layers|post_layers)\.\d+\.self_attn\.)qkv\.(weight|bias)", key)
        if fused:  # DLE's --mha pyt keeps q, k, v in one projection
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                state[_translate_key(f"{fused.group(1)}{name}.{fused.group(2)}")] = part.clone()
            continue
        new = _translate_key(key)
        if new is None:
            unknown.append(key)
        else:
            state[new] = value
    if unknown:
        raise FairseqFormatError(f"{where}: weights with no myna counterpart: {unknown[:8]}"
                                 f"{' ...' if len(unknown) > 8 else ''}")
    if model["quantizer"] is None:
        dropped = [k for k in state if k.startswith(("quantizer.", "project_q.", "project_hid."))]
        for k in dropped:
            del state[k]
    return model, state, notes


def load_fairseq(path: str | os.PathLike, config: Optional[str | os.PathLike | Mapping] = None,
                 map_location: str | torch.device = "cpu"):
    """A fairseq / NVIDIA DLE wav2vec 2.0 checkpoint (``.pt``) as a Wav2Vec2PreTrainingModel, eval mode.

    ``config``: the options (dict or JSON path) when neither the checkpoint nor a
    ``<stem>_config.json`` beside it carries them.
    """
    import logging

    from myna.interop.adapter import build_model
    from myna.interop.hf import finish_loading

    path = Path(path)
    args, state = read_checkpoint(path, config)
    cfg, state, notes = fairseq_to_myna(args, state, where=str(path))
    for note in notes:
        logging.getLogger("myna.interop").info("%s: %s", path, note)
    return finish_loading(build_model(cfg, None), state, cfg, path, map_location, optional=("encoder.masked_spec_embed",))


def read_fairseq_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights of a fairseq / DLE checkpoint under myna's names, for ``init_from_pretrained_model``."""
    args, state = read_checkpoint(path)
    return fairseq_to_myna(args, state, where=str(path))[1]
