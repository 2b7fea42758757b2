"""Build models from NeMo-shaped configs through explicit tables of class names.

A ``_target_`` is looked up in a table (NeMo's class path or myna's short name); it is never
imported. An unknown target or option is an error that names it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from omegaconf import DictConfig, OmegaConf

from myna.features import build_preprocessor, build_spec_augment
from myna.models.ctc import CTCModel
from myna.losses.config import AUX_CTC_LOSS_WEIGHT, TransducerLossConfig
from myna.models.transducer import TransducerModel
from myna.nn.contextnet import ContextNetEncoder
from myna.nn.conformer import ConformerEncoder
from myna.nn.ctc_head import CTCHead
from myna.nn.joint import RNNTJoint
from myna.nn.prediction import RNNTPredictionNetwork

__all__ = ["build_model", "build_encoder", "ENCODERS", "MODEL_CLASSES"]

_NEMO_MODULES = "nemo.collections.asr.modules."

ENCODERS: dict[str, Callable[..., Any]] = {
    _NEMO_MODULES + "ConvASREncoder": ContextNetEncoder,
    _NEMO_MODULES + "conv_asr.ConvASREncoder": ContextNetEncoder,
    "ContextNetEncoder": ContextNetEncoder,
    _NEMO_MODULES + "ConformerEncoder": ConformerEncoder,
    _NEMO_MODULES + "conformer_encoder.ConformerEncoder": ConformerEncoder,
    "ConformerEncoder": ConformerEncoder,
}
DECODERS = {_NEMO_MODULES + "RNNTDecoder", _NEMO_MODULES + "rnnt.RNNTDecoder", "RNNTDecoder"}
JOINTS = {_NEMO_MODULES + "RNNTJoint", _NEMO_MODULES + "rnnt.RNNTJoint", "RNNTJoint"}
CTC_DECODERS = {_NEMO_MODULES + "ConvASRDecoder", _NEMO_MODULES + "conv_asr.ConvASRDecoder", "ConvASRDecoder"}

# Model classes (the ``target`` key of a .nemo config) that build a TransducerModel.
MODEL_CLASSES = {
    "nemo.collections.asr.models.rnnt_bpe_models.EncDecRNNTBPEModel": "rnnt",
    "nemo.collections.asr.models.EncDecRNNTBPEModel": "rnnt",
    "nemo.collections.asr.models.hybrid_rnnt_ctc_bpe_models.EncDecHybridRNNTCTCBPEModel": "hybrid",
    "nemo.collections.asr.models.EncDecHybridRNNTCTCBPEModel": "hybrid",
    "nemo.collections.asr.models.ctc_bpe_models.EncDecCTCModelBPE": "ctc",
    "nemo.collections.asr.models.EncDecCTCModelBPE": "ctc",
    "myna.TransducerModel": "rnnt",
    "myna.CTCModel": "ctc",
}


def _plain(cfg: Any) -> Any:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg) if isinstance(cfg, Mapping) else cfg


def _target(section: Mapping, where: str, table) -> str:
    target = section.get("_target_")
    if target is None:
        raise ValueError(f"{where}._target_ is missing; one of {sorted(table)} is expected")
    if target not in table:
        raise ValueError(f"{where}._target_={target!r} is not supported; supported: {sorted(table)}")
    return target


def build_encoder(cfg: Mapping) -> Any:
    """Encoder from a NeMo ``encoder:`` section."""
    cfg = _plain(cfg)
    target = _target(cfg, "model.encoder", ENCODERS)
    kwargs = {k: v for k, v in cfg.items() if k != "_target_"}
    return ENCODERS[target](**kwargs)


def build_prediction_network(cfg: Mapping, vocab_size: int) -> RNNTPredictionNetwork:
    """Prediction network from NeMo's ``decoder:`` section (``prednet`` sub-dict)."""
    cfg = _plain(cfg)
    _target(cfg, "model.decoder", DECODERS)
    if cfg.get("vocab_size") not in (None, vocab_size):
        raise ValueError(f"model.decoder.vocab_size={cfg['vocab_size']} but the tokenizer has {vocab_size} pieces")
    return RNNTPredictionNetwork.from_nemo_config({**cfg, "vocab_size": vocab_size})


def build_joint(cfg: Mapping, vocab_size: int, encoder_hidden: int, pred_hidden: int) -> RNNTJoint:
    """Joiner from NeMo's ``joint:`` section (``jointnet`` sub-dict); hidden sizes default to the
    encoder's and prediction network's."""
    cfg = _plain(cfg)
    _target(cfg, "model.joint", JOINTS)
    if cfg.get("num_classes") not in (None, vocab_size):
        raise ValueError(f"model.joint.num_classes={cfg['num_classes']} but the tokenizer has {vocab_size} pieces")
    if cfg.get("num_extra_outputs"):
        raise ValueError("model.joint.num_extra_outputs (TDT durations) is not supported")
    jointnet = {"encoder_hidden": encoder_hidden, "pred_hidden": pred_hidden, **dict(cfg.get("jointnet") or {})}
    for key, actual in (("encoder_hidden", encoder_hidden), ("pred_hidden", pred_hidden)):
        if jointnet[key] != actual:
            raise ValueError(f"model.joint.jointnet.{key}={jointnet[key]} but the model gives {actual}")
    return RNNTJoint.from_nemo_config({**cfg, "jointnet": jointnet, "num_classes": vocab_size})


def build_ctc_head(cfg: Mapping, vocab_size: int, feat_in: int) -> CTCHead:
    """CTC head from NeMo's ``aux_ctc.decoder`` / ``decoder`` (ConvASRDecoder) section."""
    cfg = _plain(cfg)
    _target(cfg, "model.aux_ctc.decoder", CTC_DECODERS)
    num_classes = cfg.get("num_classes")
    if num_classes not in (None, -1, vocab_size):
        raise ValueError(f"CTC decoder num_classes={num_classes} but the tokenizer has {vocab_size} pieces")
    return CTCHead(feat_in=cfg.get("feat_in") or feat_in, num_classes=vocab_size)


def build_model(model_cfg: Mapping, tokenizer) -> TransducerModel | CTCModel:
    """A model from a NeMo-shaped ``model:`` config and a tokenizer.

    A config with a ``joint`` section builds a TransducerModel (hybrid when ``aux_ctc`` is
    present); one whose ``decoder`` is a ConvASRDecoder builds a CTCModel.
    """
    model_cfg = _plain(model_cfg)
    vocab_size = tokenizer.vocab_size
    preprocessor = build_preprocessor(model_cfg["preprocessor"])
    spec_cfg = model_cfg.get("spec_augment")
    spec_augment = build_spec_augment(spec_cfg) if spec_cfg else None
    encoder = build_encoder(model_cfg["encoder"])
    if not model_cfg.get("joint") and (model_cfg.get("decoder") or {}).get("_target_") in CTC_DECODERS:
        head = build_ctc_head(model_cfg["decoder"], vocab_size, encoder.output_dim)
        return CTCModel(preprocessor, encoder, head, spec_augment=spec_augment, tokenizer=tokenizer)
    decoder = build_prediction_network(model_cfg["decoder"], vocab_size)
    joint = build_joint(model_cfg["joint"], vocab_size, encoder.output_dim, decoder.output_dim)
    loss_cfg = dict(model_cfg.get("loss") or {})
    ctc_decoder = None
    aux_ctc = model_cfg.get("aux_ctc")
    if aux_ctc:
        ctc_decoder = build_ctc_head(aux_ctc["decoder"], vocab_size, encoder.output_dim)
        loss_cfg.setdefault("ctc_weight", float(aux_ctc.get("ctc_loss_weight", AUX_CTC_LOSS_WEIGHT)))
    # NeMo's own loss section (loss_name, warprnnt_numba_kwargs) maps to the full loss.
    loss_cfg = {k: v for k, v in loss_cfg.items() if k not in ("loss_name", "warprnnt_numba_kwargs")}
    max_symbols = ((model_cfg.get("decoding") or {}).get("greedy") or {}).get("max_symbols", 10)
    # NeMo slices joint + loss by joint.fused_batch_size only when joint.fuse_loss_wer is on;
    # myna does the same, and treats a missing fuse_loss_wer as on.
    joint_cfg = model_cfg["joint"]
    fused = joint_cfg.get("fused_batch_size") if joint_cfg.get("fuse_loss_wer", True) else None
    return TransducerModel(preprocessor, encoder, decoder, joint, spec_augment=spec_augment,
                           loss=TransducerLossConfig(**loss_cfg), ctc_decoder=ctc_decoder, tokenizer=tokenizer,
                           max_symbols_per_step=max_symbols or 10, fused_batch_size=fused)
