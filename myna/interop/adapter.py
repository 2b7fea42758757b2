"""The one adapter from NeMo-shaped config sections to myna objects.

A section's ``_target_`` (NeMo's class path, or myna's short name) is looked up in a table; it
is never imported. Each entry (a :class:`Component`) says what it builds, which keys change the
computation (the build function's arguments), which NeMo keys are accepted and ignored (each
with the reason it is safe), which keys myna supports with one value only, and the keys of the
sections nested inside it. An unknown key is a ``ValueError`` naming ``model.<section>.<key>``
and the target; ``nn/`` and ``features.py`` take plain typed arguments and parse nothing.

>>> encoder = build({"_target_": "ConformerEncoder", "feat_in": 80, "n_layers": 2, "d_model": 96},
...                 "model.encoder", "encoder")
>>> model = build_model(cfg.model, tokenizer)          # a whole model: section by section

Registering a new target is one :func:`register` call::

    register(Component(
        kind="encoder",
        targets=("nemo.collections.asr.modules.ConformerEncoder", "ConformerEncoder"),
        build=ConformerEncoder,                  # its keyword arguments are the section's keys
        ignored={"sync_max_audio_length": "NeMo's multi-GPU sync; the result is the same"},
        fixed={"reduction_factor": ((1,), "mid-encoder time reduction is not implemented")},
    ))

Keyword-only parameters of a build function are not config keys: the caller supplies them
(sizes decided elsewhere, e.g. ``num_tokens`` from the tokenizer, ``encoder_dim`` from the
encoder); one named ``where`` receives the section's path, for error messages. Losses, augmentations and model heads register the same way, under their own
``kind``; nested sections without a target of their own are described by :class:`Keys`, and
sections with one are built by their parent's build function with :func:`build`.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from myna.features import MaskedPatchAugmentation, MelSpectrogramFeaturizer, SpecAugment, WaveformFeaturizer
from myna.losses.config import AUX_CTC_LOSS_WEIGHT, TransducerLossConfig
from myna.models.ctc import CTCModel
from myna.models.ssl import LossEntry, SelfSupervisedModel
from myna.models.ssl_losses import CTCLossForSSL, ContrastiveLoss, MLMLoss, RNNTDecoderJointSSL, RNNTLossForSSL
from myna.models.transducer import TransducerModel
from myna.models.wav2vec2 import ContrastiveConfig, MaskingConfig, Wav2Vec2PreTrainingModel
from myna.nn.conformer import ConformerEncoder
from myna.nn.contextnet import ContextNetBlockSpec, ContextNetEncoder
from myna.nn.ctc_head import CTCHead
from myna.nn.joint import RNNTJoint
from myna.nn.prediction import RNNTPredictionNetwork
from myna.nn.quantizer import GumbelVectorQuantizer
from myna.nn.ssl_decoders import ConvASRDecoderReconstruction
from myna.nn.wav2vec2 import Wav2Vec2Encoder

__all__ = [
    "Keys", "Component", "register", "component", "targets_of", "check", "build",
    "build_model", "model_kind", "MODEL_CLASSES", "NEMO_MODEL_TARGETS", "LOSS_KEYS", "AUX_CTC_KEYS",
    "MASKING_KEYS", "CONTRASTIVE_KEYS", "PRETRAINING_KINDS",
]

log = logging.getLogger("myna.interop")

_MODULES = "nemo.collections.asr.modules."


@dataclass(frozen=True)
class Keys:
    """What a config mapping may hold.

    :param used: keys that change the computation (None: the build function's parameters).
    :param ignored: key -> why accepting and ignoring it is safe.
    :param fixed: key -> (the values myna supports, what another value would need).
    :param nested: key -> the keys of the mapping it holds (or of each mapping in its list).
    :param required: keys that must be present.
    """

    used: Optional[tuple[str, ...]] = None
    ignored: Mapping[str, str] = field(default_factory=dict)
    fixed: Mapping[str, tuple[tuple, str]] = field(default_factory=dict)
    nested: Mapping[str, "Keys"] = field(default_factory=dict)
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class Component:
    """One supported ``_target_``: the section kind, its names, its build function and its keys.

    :param kind: where it may appear (``preprocessor``, ``spec_augment``, ``encoder``,
        ``rnnt_decoder``, ``rnnt_joint``, ``ctc_decoder``, ``quantizer``; later ``loss``,
        ``augmentation`` ...).
    :param targets: NeMo's class path(s) first (the first is written on export), then myna's
        short name.
    :param build: a class or function; its keyword arguments are the section's keys, its
        keyword-only parameters what the caller supplies.
    :param ignored, fixed, nested, required, used: see :class:`Keys`.
    :param myna_only: keys myna adds that NeMo's class does not take (dropped on export).
    """

    kind: str
    targets: tuple[str, ...]
    build: Callable[..., Any]
    ignored: Mapping[str, str] = field(default_factory=dict)
    fixed: Mapping[str, tuple[tuple, str]] = field(default_factory=dict)
    nested: Mapping[str, Keys] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    used: Optional[tuple[str, ...]] = None
    myna_only: tuple[str, ...] = ()

    @property
    def nemo_target(self) -> str:
        return self.targets[0]

    @property
    def keys(self) -> Keys:
        used = self.used
        if used is None:
            params = inspect.signature(self.build).parameters.values()
            used = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self")
        return Keys(used=used, ignored=self.ignored, fixed=self.fixed, nested=self.nested, required=self.required)


_REGISTRY: dict[str, Component] = {}


def register(entry: Component) -> Component:
    """Add ``entry`` under each of its targets; a target registered twice is an error."""
    for target in entry.targets:
        if target in _REGISTRY:
            raise ValueError(f"_target_ {target!r} is registered twice")
        _REGISTRY[target] = entry
    return entry


def component(target: str) -> Optional[Component]:
    """The table entry of ``target`` (NeMo class path or short name), or None."""
    return _REGISTRY.get(target)


def targets_of(kind: str) -> list[str]:
    """Every registered target of one section kind, sorted."""
    return sorted(t for t, c in _REGISTRY.items() if c.kind == kind)


def plain(cfg: Any) -> Any:
    """A plain dict/list copy of an OmegaConf node (interpolations resolved); other values as they are."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg) if isinstance(cfg, Mapping) else cfg


def check(section: Mapping, keys: Keys, where: str, target: str) -> dict[str, Any]:
    """The keys of ``section`` that the build function takes, after checking every key.

    Ignored keys are dropped (logged at debug level), fixed keys checked and dropped, nested
    mappings checked recursively.

    :param where: the section's dotted path, e.g. ``model.decoder``; errors name ``where.key``.
    :param target: the ``_target_`` the keys belong to, named in errors.
    :raises ValueError: an unknown key, an unsupported value, or a missing required key.
    """
    if not isinstance(section, Mapping):
        raise ValueError(f"{where} ({target}) must be a mapping, got {type(section).__name__}")
    missing = [k for k in keys.required if k not in section]
    if missing:
        raise ValueError(f"{where} ({target}): missing key(s) {missing}")
    used = keys.used or ()
    args: dict[str, Any] = {}
    for key, value in section.items():
        path = f"{where}.{key}"
        if key == "_target_":
            continue
        if key in keys.ignored:
            log.debug("%s ignored (%s): %s", path, target, keys.ignored[key])
            continue
        if key in keys.fixed:
            allowed, reason = keys.fixed[key]
            if value not in allowed:
                raise ValueError(f"{path}={value!r} ({target}) is not supported: {reason}; "
                                 f"supported: {', '.join(repr(a) for a in allowed)}")
            continue
        if key not in used:
            raise ValueError(f"{path}: unknown key for {target}; known: {sorted(used)}"
                             + (f"; accepted and ignored: {sorted(keys.ignored)}" if keys.ignored else "")
                             + (f"; fixed: {sorted(keys.fixed)}" if keys.fixed else ""))
        sub = keys.nested.get(key)
        if sub is not None and value is not None:
            if isinstance(value, (list, tuple)):
                value = [check(item, sub, f"{path}.{i}", target) for i, item in enumerate(value)]
            else:
                value = check(value, sub, path, target)
        args[key] = value
    return args


def build(section: Any, where: str, kind: str, *, default_target: Optional[str] = None, **context: Any) -> Any:
    """Build the object a ``_target_`` section describes.

    :param section: the config mapping (dict or OmegaConf).
    :param where: its dotted path for error messages, e.g. ``model.encoder``.
    :param kind: the section kind expected here (see :class:`Component`).
    :param default_target: the target assumed when the section has none.
    :param context: the build function's keyword-only arguments.
    :raises ValueError: a missing or unknown target, a target of another kind, or a bad key.
    """
    section = plain(section)
    if not isinstance(section, Mapping):
        raise ValueError(f"{where} must be a mapping with a _target_, got {section!r}")
    target = section.get("_target_", default_target)
    if target is None:
        raise ValueError(f"{where}._target_ is missing; one of {targets_of(kind)} is expected")
    entry = _REGISTRY.get(target)
    if entry is None or entry.kind != kind:
        raise ValueError(f"{where}._target_={target!r} is not supported here; supported: {targets_of(kind)}")
    if "where" in inspect.signature(entry.build).parameters:  # build functions that name keys in errors
        context = {"where": where, **context}
    return entry.build(**check(section, entry.keys, where, target), **context)


# ---- front end ---------------------------------------------------------------------------------
PREPROCESSOR = register(Component(
    kind="preprocessor",
    targets=(_MODULES + "AudioToMelSpectrogramPreprocessor",
             _MODULES + "audio_preprocessing.AudioToMelSpectrogramPreprocessor",
             "AudioToMelSpectrogramPreprocessor"),
    build=MelSpectrogramFeaturizer,
    ignored={"stft_exact_pad": "deprecated in NeMo and ignored there (torch.stft is used)",
             "stft_conv": "deprecated in NeMo and ignored there (torch.stft is used)"},
    fixed={"use_torchaudio": ((False,), "myna has no torchaudio featurizer"),
           "rng": ((None,), "a random generator cannot come from a config; pass rng= to MelSpectrogramFeaturizer")},
))

SPEC_AUGMENT = register(Component(
    kind="spec_augment",
    targets=(_MODULES + "SpectrogramAugmentation", _MODULES + "audio_preprocessing.SpectrogramAugmentation",
             "SpectrogramAugmentation", "SpecAugment"),
    build=SpecAugment,
    used=("freq_masks", "time_masks", "freq_width", "time_width", "mask_value"),
    ignored={"use_vectorized_spec_augment": "a NeMo implementation switch; myna has one implementation",
             "use_numba_spec_augment": "a NeMo implementation switch; myna has one implementation",
             "rect_time": "size of SpecCutout rectangles, which rect_masks: 0 turns off",
             "rect_freq": "size of SpecCutout rectangles, which rect_masks: 0 turns off"},
    fixed={"rect_masks": ((0,), "SpecCutout (rectangle masks) is not implemented"),
           "rng": ((None,), "a random generator cannot come from a config; pass generator= to SpecAugment")},
))


WAVEFORM = register(Component(
    kind="preprocessor",
    targets=("myna.WaveformFeaturizer", "WaveformFeaturizer"),
    build=WaveformFeaturizer,
))


# ---- encoders ----------------------------------------------------------------------------------
register(Component(
    kind="encoder",
    targets=(_MODULES + "ConformerEncoder", _MODULES + "conformer_encoder.ConformerEncoder", "ConformerEncoder"),
    build=ConformerEncoder,
    ignored={
        "subsampling_conv_chunking_factor": "NeMo's chunked subsampling convs save memory on long inputs; "
                                            "the result is the same",
        "reduction": "read only when reduction_factor > 1",
        "reduction_position": "read only when reduction_factor > 1",
        "global_tokens": "used only by NeMo's rel_pos_local_attn, which myna does not implement",
        "global_tokens_spacing": "used only by NeMo's rel_pos_local_attn, which myna does not implement",
        "global_attn_separate": "used only by NeMo's rel_pos_local_attn, which myna does not implement",
        "use_pytorch_sdpa": "NeMo's choice of attention kernel; myna's is use_sdpa (same numbers)",
        "use_pytorch_sdpa_backends": "NeMo's choice of attention kernel; myna's is use_sdpa (same numbers)",
        "sync_max_audio_length": "NeMo's multi-GPU sync of the positional-table length; the result is the same",
    },
    fixed={"reduction_factor": ((1,), "mid-encoder time reduction is not implemented"),
           "att_chunk_context_size": ((None,), "chunked attention contexts are not implemented"),
           "conv_context_style": (("regular",), "only regular convolution contexts are implemented")},
    myna_only=("gradient_checkpointing", "use_sdpa"),
))

_JASPER_BLOCK = Keys(
    used=("filters", "repeat", "kernel", "stride", "dilation", "dropout", "residual", "separable", "se",
          "se_context_size", "se_reduction_ratio", "kernel_size_factor", "residual_mode", "stride_last",
          "future_context"),
    required=("filters", "repeat", "kernel", "stride", "dilation", "dropout", "residual"),
    ignored={"se_interpolation_mode": "NeMo resizes a windowed SE context with it; myna's SE context is one "
                                      "vector per utterance, which the resize leaves as it is"},
    fixed={"groups": ((1,), "grouped convolutions are not implemented"),
           "heads": ((-1,), "per-head convolutions are not implemented"),
           "residual_dense": ((False,), "dense residuals are not implemented"),
           "quantize": ((False,), "quantisation is not implemented")},
)


def _one(value: Any, name: str) -> int:
    """NeMo block values are one-element lists ([5]) or plain ints."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ValueError(f"{name}={list(value)} must have one element")
        value = value[0]
    return int(value)


def _scaled_kernel(kernel: int, factor: float) -> int:
    """NeMo's kernel_size_factor: max(int(K * factor), 1), bumped to the next odd number."""
    scaled = max(int(kernel * factor), 1)
    return scaled + 1 if scaled % 2 == 0 else scaled


def _jasper_block(block: Mapping[str, Any], where: str) -> ContextNetBlockSpec:
    return ContextNetBlockSpec(
        out_channels=int(block["filters"]),
        repeat=int(block["repeat"]),
        kernel_size=_scaled_kernel(_one(block["kernel"], f"{where}.kernel"), float(block.get("kernel_size_factor", 1.0))),
        stride=_one(block["stride"], f"{where}.stride"),
        dilation=_one(block["dilation"], f"{where}.dilation"),
        dropout=float(block["dropout"]),
        residual=bool(block["residual"]),
        residual_mode=block.get("residual_mode"),
        separable=bool(block.get("separable", False)),
        se=bool(block.get("se", False)),
        se_reduction_ratio=int(block.get("se_reduction_ratio", 8)),
        se_context_window=int(block.get("se_context_size", -1)),
        stride_last=bool(block.get("stride_last", False)),
        future_context=int(block.get("future_context", -1)),
    )


def conv_asr_encoder(jasper: Sequence[Mapping[str, Any]], feat_in: int, activation: str = "swish",
                     normalization_mode: str = "batch", residual_mode: str = "add", norm_groups: int = -1,
                     frame_splicing: int = 1, init_mode: Optional[str] = "xavier_uniform",
                     gradient_checkpointing: bool = False, *, where: str = "model.encoder") -> ContextNetEncoder:
    """NeMo's ``ConvASREncoder`` section (already key-checked) -> :class:`ContextNetEncoder`."""
    if not jasper:
        raise ValueError(f"{where}.jasper: the block list is empty")
    blocks = [_jasper_block(block, f"{where}.jasper.{i}") for i, block in enumerate(jasper)]
    return ContextNetEncoder(feat_in=feat_in, blocks=blocks, activation=activation,
                             normalization_mode=normalization_mode, residual_mode=residual_mode,
                             norm_groups=norm_groups, frame_splicing=frame_splicing, init_mode=init_mode,
                             gradient_checkpointing=gradient_checkpointing)


register(Component(
    kind="encoder",
    targets=(_MODULES + "ConvASREncoder", _MODULES + "conv_asr.ConvASREncoder", "ContextNetEncoder"),
    build=conv_asr_encoder,
    required=("jasper", "feat_in"),
    nested={"jasper": _JASPER_BLOCK},
    fixed={"conv_mask": ((True,), "unmasked convolutions are not implemented"),
           "quantize": ((False,), "quantisation is not implemented")},
    myna_only=("gradient_checkpointing",),
))


register(Component(
    kind="encoder",
    targets=("myna.Wav2Vec2Encoder", "Wav2Vec2Encoder"),
    build=Wav2Vec2Encoder,  # wav2vec 2.0 (fairseq / NVIDIA DLE / HF layouts; Hourglass by NVIDIA's string)
))


# ---- Transducer prediction network and joint ---------------------------------------------------
def _same_size(where: str, given: Any, actual: int, source: str) -> None:
    if given not in (None, actual):
        raise ValueError(f"{where}={given} but {source} gives {actual}")


def rnnt_decoder(prednet: Mapping[str, Any], vocab_size: Optional[int] = None, random_state_sampling: bool = False,
                 blank_as_pad: bool = True, *, num_tokens: int, where: str = "model.decoder") -> RNNTPredictionNetwork:
    """NeMo's ``RNNTDecoder`` section -> :class:`RNNTPredictionNetwork` (``num_tokens``: the tokenizer's)."""
    _same_size(f"{where}.vocab_size", vocab_size, num_tokens, "the tokenizer")
    return RNNTPredictionNetwork(vocab_size=num_tokens, blank_as_pad=bool(blank_as_pad),
                                 random_state_sampling=bool(random_state_sampling), **prednet)


register(Component(
    kind="rnnt_decoder",
    targets=(_MODULES + "RNNTDecoder", _MODULES + "rnnt.RNNTDecoder", "RNNTDecoder"),
    build=rnnt_decoder,
    required=("prednet",),
    nested={"prednet": Keys(used=("pred_hidden", "pred_rnn_layers", "dropout", "forget_gate_bias", "t_max",
                                  "weights_init_scale", "hidden_hidden_bias_scale", "rnn_hidden_size"),
                            required=("pred_hidden",))},
    fixed={"normalization_mode": ((None,), "normalised prediction-network LSTMs are not implemented")},
))


def rnnt_joint(jointnet: Mapping[str, Any], num_classes: Optional[int] = None, *, num_tokens: int,
               encoder_hidden: int, pred_hidden: int, where: str = "model.joint") -> RNNTJoint:
    """NeMo's ``RNNTJoint`` section -> :class:`RNNTJoint`; hidden sizes default to the encoder's and
    prediction network's and must equal them when given."""
    _same_size(f"{where}.num_classes", num_classes, num_tokens, "the tokenizer")
    _same_size(f"{where}.jointnet.encoder_hidden", jointnet.get("encoder_hidden"), encoder_hidden, "the encoder")
    _same_size(f"{where}.jointnet.pred_hidden", jointnet.get("pred_hidden"), pred_hidden, "the prediction network")
    if "joint_hidden" not in jointnet:
        raise ValueError(f"{where}.jointnet.joint_hidden is missing")
    return RNNTJoint(encoder_hidden=encoder_hidden, pred_hidden=pred_hidden, joint_hidden=int(jointnet["joint_hidden"]),
                     num_classes=num_tokens, activation=jointnet.get("activation", "relu"),
                     dropout=float(jointnet.get("dropout") or 0.0))


_READ_BY_MODEL = "read by the Transducer model (it slices joint + loss), not by the joint network"
register(Component(
    kind="rnnt_joint",
    targets=(_MODULES + "RNNTJoint", _MODULES + "rnnt.RNNTJoint", "RNNTJoint"),
    build=rnnt_joint,
    required=("jointnet",),
    nested={"jointnet": Keys(used=("encoder_hidden", "pred_hidden", "joint_hidden", "activation", "dropout"))},
    ignored={"log_softmax": "myna's joint returns logits; each loss and decoder normalises them itself",
             "preserve_memory": "NeMo frees CUDA memory with it; the result is the same",
             "vocabulary": "NeMo's copy of the tokenizer's pieces; the tokenizer itself is used",
             "fuse_loss_wer": _READ_BY_MODEL,
             "fused_batch_size": _READ_BY_MODEL,
             "experimental_fuse_loss_wer": "NeMo's deprecated name of fuse_loss_wer"},
    fixed={"num_extra_outputs": ((0,), "extra joint outputs are TDT durations; TDT models are not supported"),
           "masking_prob": ((-1.0, 0.0, None), "joint input masking is not implemented")},
))


# ---- CTC head ----------------------------------------------------------------------------------
def conv_asr_decoder(feat_in: Optional[int] = None, num_classes: Optional[int] = None,
                     init_mode: Optional[str] = "xavier_uniform", *, num_tokens: int, encoder_dim: int,
                     blank_id: Optional[int] = None, where: str = "model.decoder") -> CTCHead:
    """NeMo's ``ConvASRDecoder`` section -> :class:`CTCHead` (``num_classes: -1`` means the tokenizer's).

    ``blank_id``: the tokenizer's own blank (a character vocabulary's ``<pad>``, as in Hugging
    Face's CTC models); None adds a blank class after the vocabulary, as NeMo does.
    """
    _same_size(f"{where}.feat_in", feat_in, encoder_dim, "the encoder")
    _same_size(f"{where}.num_classes", None if num_classes == -1 else num_classes, num_tokens, "the tokenizer")
    return CTCHead(feat_in=encoder_dim, num_classes=num_tokens, init_mode=init_mode, blank_id=blank_id)


CTC_DECODER = register(Component(
    kind="ctc_decoder",
    targets=(_MODULES + "ConvASRDecoder", _MODULES + "conv_asr.ConvASRDecoder", "ConvASRDecoder"),
    build=conv_asr_decoder,
    ignored={"vocabulary": "NeMo's copy of the tokenizer's pieces; the tokenizer itself is used"},
    fixed={"add_blank": ((True,), "a CTC head without a blank class cannot be trained with CTC")},
))


# ---- sections without a target of their own ----------------------------------------------------
_RNNT_LOSS_NAMES = ("default", "warprnnt", "warprnnt_numba", "pytorch")

# ``model.loss`` of the Transducer models: myna's options (losses/config.py) and NeMo's.
LOSS_KEYS = Keys(
    used=tuple(f.name for f in fields(TransducerLossConfig)),
    ignored={"warprnnt_numba_kwargs": "options of NeMo's numba RNN-T kernel: fastemit_lambda (FastEmit changes "
                                      "only gradients; not implemented, myna trains without it) and clamp "
                                      "(gradient clipping inside the kernel; not implemented)"},
    fixed={"loss_name": (_RNNT_LOSS_NAMES, "NeMo's other losses (TDT, multi-blank, graph RNN-T) are not implemented; "
                                           "these names are the plain RNN-T loss, myna's full loss")},
)

# ``model.aux_ctc`` of hybrid RNN-T + CTC models (``decoder`` is a ConvASRDecoder section).
AUX_CTC_KEYS = Keys(
    used=("decoder", "ctc_loss_weight"),
    required=("decoder",),
    ignored={"use_cer": "a metric switch of NeMo's validation logging",
             "decoding": "NeMo's default strategy for the CTC head; myna picks one per call (ctc_greedy, ctc_beam)"},
    fixed={"ctc_reduction": (("mean_batch",), "myna's CTC loss averages per-utterance sums over the batch")},
)


# ---- whole models ------------------------------------------------------------------------------
_ASR_MODELS = "nemo.collections.asr.models."
# What myna writes for each kind: NeMo's class, so NeMo's restore_from builds the same model.
NEMO_MODEL_TARGETS = {
    "rnnt": _ASR_MODELS + "rnnt_bpe_models.EncDecRNNTBPEModel",
    "hybrid": _ASR_MODELS + "hybrid_rnnt_ctc_bpe_models.EncDecHybridRNNTCTCBPEModel",
    "ctc": _ASR_MODELS + "ctc_bpe_models.EncDecCTCModelBPE",
    "ssl": _ASR_MODELS + "ssl_models.SpeechEncDecSelfSupervisedModel",
}


def _front_end(cfg: Mapping[str, Any]):
    preprocessor = build(cfg.get("preprocessor") or {}, "model.preprocessor", "preprocessor",
                         default_target=PREPROCESSOR.nemo_target)
    spec_cfg = cfg.get("spec_augment")
    spec_augment = build(spec_cfg, "model.spec_augment", "spec_augment",
                         default_target=SPEC_AUGMENT.nemo_target) if spec_cfg else None
    return preprocessor, spec_augment


def _encoder(cfg: Mapping[str, Any]):
    if not cfg.get("encoder"):
        raise ValueError(f"model.encoder is missing; one of {targets_of('encoder')} is expected")
    return build(cfg["encoder"], "model.encoder", "encoder")


def _transducer_model(cfg: Mapping[str, Any], tokenizer) -> TransducerModel:
    num_tokens = tokenizer.vocab_size
    preprocessor, spec_augment = _front_end(cfg)
    encoder = _encoder(cfg)
    decoder = build(cfg.get("decoder"), "model.decoder", "rnnt_decoder", num_tokens=num_tokens)
    joint_cfg = cfg.get("joint") or {}
    joint = build(joint_cfg, "model.joint", "rnnt_joint", num_tokens=num_tokens, encoder_hidden=encoder.output_dim,
                  pred_hidden=decoder.output_dim)
    loss = check(cfg.get("loss") or {}, LOSS_KEYS, "model.loss", "the Transducer loss")
    ctc_decoder = None
    if cfg.get("aux_ctc"):
        aux = check(cfg["aux_ctc"], AUX_CTC_KEYS, "model.aux_ctc", "the hybrid model's CTC head")
        ctc_decoder = build(aux["decoder"], "model.aux_ctc.decoder", "ctc_decoder", num_tokens=num_tokens,
                            encoder_dim=encoder.output_dim)
        loss.setdefault("ctc_weight", float(aux.get("ctc_loss_weight", AUX_CTC_LOSS_WEIGHT)))
    max_symbols = ((cfg.get("decoding") or {}).get("greedy") or {}).get("max_symbols", 10)
    # NeMo slices joint + loss by joint.fused_batch_size only when joint.fuse_loss_wer is on;
    # myna does the same, and treats a missing fuse_loss_wer as on.
    fused = joint_cfg.get("fused_batch_size") if joint_cfg.get("fuse_loss_wer", True) else None
    return TransducerModel(preprocessor, encoder, decoder, joint, spec_augment=spec_augment,
                           loss=TransducerLossConfig(**loss), ctc_decoder=ctc_decoder, tokenizer=tokenizer,
                           max_symbols_per_step=max_symbols or 10, fused_batch_size=fused)


def _ctc_model(cfg: Mapping[str, Any], tokenizer) -> CTCModel:
    preprocessor, spec_augment = _front_end(cfg)
    encoder = _encoder(cfg)
    head = build(cfg.get("decoder"), "model.decoder", "ctc_decoder", num_tokens=tokenizer.vocab_size,
                 encoder_dim=encoder.output_dim, blank_id=getattr(tokenizer, "blank_id", None))
    return CTCModel(preprocessor, encoder, head, spec_augment=spec_augment, tokenizer=tokenizer)


# ---- self-supervised pre-training (wav2vec 2.0) ---------------------------------------------------
register(Component(
    kind="quantizer",
    targets=("myna.GumbelVectorQuantizer", "GumbelVectorQuantizer"),
    build=GumbelVectorQuantizer,
    # ``dim`` is the encoder's conv width, supplied by the model builder
    used=("num_vars", "groups", "vq_dim", "temp", "combine_groups", "time_first", "weight_proj_depth",
          "weight_proj_factor", "perplexity_eps"),
))

MASKING_KEYS = Keys(used=tuple(f.name for f in fields(MaskingConfig)))
CONTRASTIVE_KEYS = Keys(used=tuple(f.name for f in fields(ContrastiveConfig)))


def _pretraining_model(cfg: Mapping[str, Any]) -> Wav2Vec2PreTrainingModel:
    """``model:`` of a wav2vec 2.0 pre-training recipe: ``preprocessor`` (WaveformFeaturizer),
    ``encoder`` (Wav2Vec2Encoder), ``quantizer`` (null for an encoder-only model), ``masking``
    (:class:`MaskingConfig` keys), ``contrastive`` (:class:`ContrastiveConfig` keys),
    ``final_dim`` and ``dropout_features``."""
    misplaced = sorted(k for k in ("decoder", "joint", "aux_ctc", "spec_augment") if cfg.get(k))
    if misplaced:
        raise ValueError(f"model.{misplaced[0]}: a wav2vec 2.0 pre-training model has no {misplaced[0]} "
                         "(fine-tune the pre-trained encoder into a CTC or Transducer recipe instead)")
    preprocessor = build(cfg.get("preprocessor") or {}, "model.preprocessor", "preprocessor",
                         default_target=WAVEFORM.nemo_target)
    encoder = _encoder(cfg)
    if not isinstance(encoder, Wav2Vec2Encoder):
        raise ValueError(f"model.encoder._target_={cfg['encoder'].get('_target_')!r}: wav2vec 2.0 pre-training "
                         "needs a Wav2Vec2Encoder")
    quantizer = None
    if cfg.get("quantizer"):
        quantizer = build(cfg["quantizer"], "model.quantizer", "quantizer", default_target="myna.GumbelVectorQuantizer",
                          dim=encoder.feature_extractor.output_dim)
    masking = MaskingConfig(**check(cfg.get("masking") or {}, MASKING_KEYS, "model.masking", "wav2vec 2.0 masking"))
    contrastive = ContrastiveConfig(**check(cfg.get("contrastive") or {}, CONTRASTIVE_KEYS, "model.contrastive",
                                            "the wav2vec 2.0 loss"))
    return Wav2Vec2PreTrainingModel(preprocessor, encoder, quantizer, final_dim=int(cfg.get("final_dim", 256)),
                                    masking=masking, contrastive=contrastive,
                                    dropout_features=0.1 if cfg.get("dropout_features") is None
                                    else float(cfg["dropout_features"]))


# ---- NeMo's self-supervised model (SpeechEncDecSelfSupervisedModel) -------------------------------
_LOSSES = "nemo.collections.asr.losses."

register(Component(
    kind="spec_augment",
    targets=(_MODULES + "MaskedPatchAugmentation", _MODULES + "audio_preprocessing.MaskedPatchAugmentation",
             "MaskedPatchAugmentation"),
    build=MaskedPatchAugmentation,
    used=("patch_size", "mask_patches", "freq_masks", "freq_width", "mask_value"),
    myna_only=("mask_value",),
))

register(Component(
    kind="ssl_decoder",
    targets=(_MODULES + "ConvASRDecoderReconstruction", _MODULES + "conv_asr.ConvASRDecoderReconstruction",
             "ConvASRDecoderReconstruction"),
    build=ConvASRDecoderReconstruction,
))


def rnnt_decoder_joint_ssl(decoder: Mapping[str, Any], joint: Mapping[str, Any], *, encoder_dim: int,
                           num_ids: Optional[int], where: str) -> RNNTDecoderJointSSL:
    """NeMo's ``RNNTDecoderJointSSL`` section (an ``RNNTDecoder`` and an ``RNNTJoint`` over the
    quantizer's ids; ``num_ids``: V^G of the loss that makes the targets)."""
    vocab = int((joint or {}).get("num_classes") or num_ids or 0)
    if vocab <= 0:
        raise ValueError(f"{where}.joint.num_classes is needed (the quantizer's codebook_size ** num_groups)")
    prednet = build(decoder, f"{where}.decoder", "rnnt_decoder", num_tokens=vocab)
    jointnet = build(joint, f"{where}.joint", "rnnt_joint", num_tokens=vocab, encoder_hidden=encoder_dim,
                     pred_hidden=prednet.output_dim)
    return RNNTDecoderJointSSL(prednet, jointnet)


register(Component(
    kind="ssl_decoder",
    targets=(_MODULES + "RNNTDecoderJointSSL", _MODULES + "rnnt.RNNTDecoderJointSSL", "RNNTDecoderJointSSL"),
    build=rnnt_decoder_joint_ssl,
    required=("decoder", "joint"),
))

register(Component(
    kind="ssl_loss",
    targets=(_LOSSES + "ContrastiveLoss", _LOSSES + "ssl_losses.contrastive.ContrastiveLoss", "ContrastiveLoss"),
    build=ContrastiveLoss,
))
register(Component(
    kind="ssl_loss",
    targets=(_LOSSES + "MLMLoss", _LOSSES + "ssl_losses.mlm.MLMLoss", "MLMLoss"),
    build=MLMLoss,
))
register(Component(
    kind="ssl_loss",
    targets=(_LOSSES + "CTCLossForSSL", _LOSSES + "ssl_losses.ctc.CTCLossForSSL", "CTCLossForSSL"),
    build=CTCLossForSSL,
))
register(Component(
    kind="ssl_loss",
    targets=(_LOSSES + "RNNTLossForSSL", _LOSSES + "ssl_losses.rnnt.RNNTLossForSSL", "RNNTLossForSSL"),
    build=RNNTLossForSSL,
    # encoder_dim / pred_dim (the pruned loss' projections) come from the encoder and the head
    used=("num_classes", "loss_name", "s_range", "simple_loss_scale", "lm_only_scale", "am_only_scale"),
    myna_only=("loss_name", "s_range", "simple_loss_scale", "lm_only_scale", "am_only_scale"),
))

# ``model.loss_list.<name>``: a decoder, a loss, and how the model uses them (NeMo's keys).
SSL_ENTRY_KEYS = Keys(used=("decoder", "loss", "loss_alpha", "output_from_layer", "targets_from_loss", "start_step",
                            "transpose_encoded", "is_active"), required=("decoder", "loss"))


def _ssl_decoder(section: Any, where: str, encoder_dim: int, num_ids: Optional[int]):
    target = (section or {}).get("_target_") if isinstance(section, Mapping) else None
    if target in targets_of("ctc_decoder"):  # MLM / CTC heads: NeMo's ConvASRDecoder over the ids
        if not section.get("num_classes") or section["num_classes"] < 1:
            raise ValueError(f"{where}.num_classes must be given (the quantizer's codebook_size ** num_groups)")
        return build(section, where, "ctc_decoder", num_tokens=int(section["num_classes"]), encoder_dim=encoder_dim)
    entry = component(target) if target else None
    if entry is not None and entry.build is rnnt_decoder_joint_ssl:
        return build(section, where, "ssl_decoder", encoder_dim=encoder_dim, num_ids=num_ids)
    return build(section, where, "ssl_decoder")


def _ssl_loss(section: Any, where: str, encoder_dim: int, decoder) -> Any:
    target = section.get("_target_") if isinstance(section, Mapping) else None
    if target in targets_of("ssl_loss") and component(target).build is RNNTLossForSSL:
        pred_dim = decoder.decoder.output_dim if isinstance(decoder, RNNTDecoderJointSSL) else None
        return build(section, where, "ssl_loss", encoder_dim=encoder_dim, pred_dim=pred_dim)
    return build(section, where, "ssl_loss")


def _ssl_model(cfg: Mapping[str, Any]) -> SelfSupervisedModel:
    """``model:`` of NeMo's ``SpeechEncDecSelfSupervisedModel`` (``conformer_ssl.yaml``):
    ``preprocessor``, ``spec_augment`` (MaskedPatchAugmentation), ``encoder``, and an ordered
    ``loss_list`` (or ``decoder`` + ``loss``), ``feature_penalty``, ``dropout_features``,
    ``dropout_features_q``."""
    preprocessor, spec_augment = _front_end(cfg)
    encoder = _encoder(cfg)
    single = not cfg.get("loss_list")
    if single:
        if not (cfg.get("decoder") or {}).get("_target_") or not (cfg.get("loss") or {}).get("_target_"):
            raise ValueError("model.loss_list (or model.decoder with model.loss) is needed for a self-supervised model")
        # myna's recipe defaults put the Transducer loss options in model.loss; they are not this loss'.
        loss = {k: v for k, v in cfg["loss"].items() if k not in (LOSS_KEYS.used or ())}
        sections = {"loss": ("model", {"decoder": cfg["decoder"], "loss": loss})}
    else:
        sections = {name: (f"model.loss_list.{name}", check(entry, SSL_ENTRY_KEYS, f"model.loss_list.{name}",
                                                            "the loss_list entry"))
                    for name, entry in cfg["loss_list"].items()}
    pairs, entries, num_ids = {}, {}, None
    for name, (where, entry) in sections.items():
        decoder = _ssl_decoder(entry["decoder"], f"{where}.decoder", encoder.output_dim, num_ids)
        loss = _ssl_loss(entry["loss"], f"{where}.loss", encoder.output_dim, decoder)
        if isinstance(loss, ContrastiveLoss) and loss.quantized_targets:
            num_ids = loss.quantizer.num_vars ** loss.quantizer.groups
        pairs[name] = (decoder, loss)
        alpha = entry.get("loss_alpha")
        entries[name] = LossEntry(
            name=name, loss_alpha=1.0 if alpha is None else float(alpha),
            output_from_layer=entry.get("output_from_layer"), targets_from_loss=entry.get("targets_from_loss"),
            start_step=int(entry.get("start_step") or 0), transpose_encoded=bool(entry.get("transpose_encoded")),
            is_active=bool(entry.get("is_active", True)))
    return SelfSupervisedModel(preprocessor, encoder, spec_augment, pairs, entries, single=single,
                               feature_penalty=float(cfg.get("feature_penalty") or 0.0),
                               dropout_features=cfg.get("dropout_features"),
                               dropout_features_q=cfg.get("dropout_features_q"))


# Model kinds trained without labels (``myna pretrain``); they have no tokenizer.
PRETRAINING_KINDS = ("wav2vec2_pretraining", "ssl")

# Model classes (the ``target`` key of a .nemo config) -> the kind of model they build;
# "transducer" is myna's old name for RNN-T or hybrid (decided by the presence of aux_ctc).
MODEL_CLASSES: dict[str, str] = {
    _ASR_MODELS + "rnnt_bpe_models.EncDecRNNTBPEModel": "rnnt",
    _ASR_MODELS + "EncDecRNNTBPEModel": "rnnt",
    _ASR_MODELS + "hybrid_rnnt_ctc_bpe_models.EncDecHybridRNNTCTCBPEModel": "hybrid",
    _ASR_MODELS + "EncDecHybridRNNTCTCBPEModel": "hybrid",
    _ASR_MODELS + "ctc_bpe_models.EncDecCTCModelBPE": "ctc",
    _ASR_MODELS + "EncDecCTCModelBPE": "ctc",
    "myna.TransducerModel": "transducer",  # archives written by myna 0.1
    "myna.CTCModel": "ctc",
    "myna.Wav2Vec2PreTrainingModel": "wav2vec2_pretraining",
    _ASR_MODELS + "ssl_models.SpeechEncDecSelfSupervisedModel": "ssl",
    _ASR_MODELS + "SpeechEncDecSelfSupervisedModel": "ssl",
}


def model_kind(cfg: Mapping[str, Any]) -> str:
    """``rnnt``, ``hybrid`` or ``ctc`` for a ``model:`` config, from its sections.

    A config with a ``joint`` section is a Transducer (hybrid with ``aux_ctc``); one whose
    ``decoder`` is a CTC head is a CTC model. A ``target`` key, when present, must be a
    supported class of the same kind.
    """
    cfg = plain(cfg)
    if MODEL_CLASSES.get(cfg.get("target")) in PRETRAINING_KINDS:
        return MODEL_CLASSES[cfg["target"]]
    if cfg.get("joint"):
        kind = "hybrid" if cfg.get("aux_ctc") else "rnnt"
    elif (cfg.get("decoder") or {}).get("_target_") in targets_of("ctc_decoder"):
        kind = "ctc"
    else:
        raise ValueError("the model config has neither a joint section (Transducer) nor a CTC decoder "
                         f"(model.decoder._target_ one of {targets_of('ctc_decoder')})")
    target = cfg.get("target")
    if target is not None:
        declared = MODEL_CLASSES.get(target)
        if declared is None:
            raise ValueError(f"model class {target!r} is not supported; supported: {sorted(MODEL_CLASSES)}")
        if declared != kind and not (declared == "transducer" and kind in ("rnnt", "hybrid")):
            raise ValueError(f"model class {target!r} builds a {declared} model, but the sections "
                             f"describe a {kind} model")
    return kind


def build_model(model_cfg: Mapping[str, Any], tokenizer) -> TransducerModel | CTCModel | Wav2Vec2PreTrainingModel:
    """A model from a NeMo-shaped ``model:`` config and a tokenizer, section by section
    (``tokenizer`` None for a pre-training model, ``target: myna.Wav2Vec2PreTrainingModel``).

    Sections that describe data or the run (``train_ds``, ``optim``, ``tokenizer`` ...) are not
    read here.
    """
    cfg = plain(model_cfg)
    kind = model_kind(cfg)
    if kind == "wav2vec2_pretraining":
        return _pretraining_model(cfg)
    if kind == "ssl":
        return _ssl_model(cfg)
    return _ctc_model(cfg, tokenizer) if kind == "ctc" else _transducer_model(cfg, tokenizer)
