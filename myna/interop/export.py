"""Export a myna model as a ``.nemo`` archive that NeMo 3.0 restores with ``restore_from``.

myna's own archives share the .nemo layout but may carry myna-only keys (``loss.name: pruned``,
``encoder.gradient_checkpointing``, beam-search defaults) and myna-only weights (the pruned
loss' ``simple_am_proj`` / ``simple_lm_proj``). NeMo builds its model class from the config and
loads the weights strictly, so the export:

- sets ``target`` to NeMo's class (``EncDecRNNTBPEModel``, ``EncDecHybridRNNTCTCBPEModel`` or
  ``EncDecCTCModelBPE``);
- keeps only the config sections and keys NeMo knows, with resolved sizes (``vocab_size``,
  ``num_classes``, ``jointnet.encoder_hidden`` / ``pred_hidden``, ``vocabulary``);
- maps myna's loss to NeMo's default RNN-T loss (the pruned loss has no NeMo counterpart; the
  weights it trains are the same network) and ``ctc_weight`` to ``aux_ctc.ctc_loss_weight``;
- writes the tokenizer as ``nemo:`` artifacts (``tokenizer.model``, ``tokenizer.vocab``,
  ``vocab.txt``);
- keeps the state dict minus myna-only tensors; every other name already equals NeMo's.

>>> model = myna.load("fixture.nemo")
>>> save_nemo(model, "out.nemo")   # NeMo: ASRModel.restore_from("out.nemo")
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from myna.interop.nemo import write_nemo
from myna.models.builder import MODEL_CLASSES

__all__ = ["save_nemo", "nemo_config", "export_nemo_file", "NEMO_TARGETS"]

NEMO_TARGETS = {
    "rnnt": "nemo.collections.asr.models.rnnt_bpe_models.EncDecRNNTBPEModel",
    "hybrid": "nemo.collections.asr.models.hybrid_rnnt_ctc_bpe_models.EncDecHybridRNNTCTCBPEModel",
    "ctc": "nemo.collections.asr.models.ctc_bpe_models.EncDecCTCModelBPE",
}
# Model-level keys NeMo's ASR models read; anything else in a myna config is dropped.
_MODEL_KEYS = ("sample_rate", "compute_eval_loss", "log_prediction", "skip_nan_grad", "model_defaults",
               "tokenizer", "preprocessor", "spec_augment", "encoder", "decoder", "joint", "decoding",
               "loss", "aux_ctc", "variational_noise", "interctc")
# Keys myna adds to NeMo's sections (section -> keys).
_MYNA_ONLY = {"encoder": ("gradient_checkpointing",)}
_MYNA_ONLY_WEIGHTS = ("simple_am_proj.", "simple_lm_proj.")
_NEMO_RNNT_STRATEGIES = ("greedy", "greedy_batch", "beam", "tsd", "alsd", "maes")


def save_nemo(model, path: str | Path, config: DictConfig | Mapping | None = None) -> Path:
    """Write ``model`` as a NeMo-restorable ``.nemo`` archive.

    Args:
        model: a myna ``TransducerModel`` (RNN-T or hybrid) or ``CTCModel`` with a SentencePiece
            ``tokenizer``.
        path: destination file (written atomically).
        config: the model's config (``model:`` section or a whole recipe); defaults to
            ``model.config``, which ``myna.load`` sets.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: no config, an unsupported model class, or no tokenizer on the model.
    """
    if config is None:
        config = getattr(model, "config", None)
    if config is None:
        raise ValueError("save_nemo: the model has no .config; pass config= (the model: section it was built from)")
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("save_nemo: the model has no tokenizer; NeMo's BPE models need one")
    cfg = nemo_config(model, config)
    with tempfile.TemporaryDirectory(prefix="myna-export-") as tmp:
        artifacts = _tokenizer_artifacts(tokenizer, Path(tmp))
        state = {k: v for k, v in model.state_dict().items() if not k.startswith(_MYNA_ONLY_WEIGHTS)}
        return write_nemo(path, cfg, state, artifacts)


def nemo_config(model, config: DictConfig | Mapping) -> dict[str, Any]:
    """NeMo 3.0 model config (plain dict) for ``model`` from its myna config.

    Args:
        model: the built myna model (sizes are read from it, not trusted from the config).
        config: a ``model:`` section, or a whole recipe that has one.
    """
    full = OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else copy.deepcopy(dict(config))
    src = dict(full.get("model", full)) if "encoder" not in full else full
    kind = MODEL_CLASSES.get(src.get("target", "myna.TransducerModel"))
    if kind is None:
        raise ValueError(f"save_nemo: model class {src.get('target')!r} has no NeMo counterpart")
    if kind != "ctc" and getattr(model, "ctc_decoder", None) is not None:
        kind = "hybrid"
    cfg = {k: copy.deepcopy(src[k]) for k in _MODEL_KEYS if k in src}
    for section, keys in _MYNA_ONLY.items():
        for key in keys:
            (cfg.get(section) or {}).pop(key, None)
    vocab = [model.tokenizer.id_to_piece(i) for i in range(model.tokenizer.vocab_size)]
    cfg["tokenizer"] = {"dir": None, "type": "bpe", "model_path": "nemo:tokenizer.model",
                        "vocab_path": "nemo:vocab.txt", "spe_tokenizer_vocab": "nemo:tokenizer.vocab"}
    if kind == "ctc":
        cfg["decoder"] = {"_target_": "nemo.collections.asr.modules.ConvASRDecoder",
                          "feat_in": model.encoder.output_dim, "num_classes": len(vocab), "vocabulary": vocab}
        cfg["decoding"] = {"strategy": "greedy_batch"}
        cfg.pop("joint", None)
        cfg.pop("loss", None)
    else:
        cfg["decoder"] = {**cfg["decoder"], "vocab_size": len(vocab)}
        joint = dict(cfg["joint"])
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
            aux["decoder"] = {"_target_": "nemo.collections.asr.modules.ConvASRDecoder",
                              "feat_in": model.encoder.output_dim, "num_classes": len(vocab), "vocabulary": vocab}
            aux.setdefault("decoding", {"strategy": "greedy_batch"})
            cfg["aux_ctc"] = aux
    # NeMo's transcribe() builds its loader from validation_ds; data paths stay empty.
    sample_rate = int(src.get("sample_rate") or model.preprocessor.sample_rate)
    for split in ("train_ds", "validation_ds", "test_ds"):
        cfg[split] = {"manifest_filepath": None, "sample_rate": sample_rate, "batch_size": 16,
                      "shuffle": split == "train_ds", "num_workers": 0, "pin_memory": False,
                      "use_start_end_token": False}
    cfg["target"] = NEMO_TARGETS[kind]
    cfg["nemo_version"] = "3.0.0"
    return cfg


def _tokenizer_artifacts(tokenizer, tmp: Path) -> dict[str, Path]:
    """tokenizer.model, tokenizer.vocab (piece<TAB>score) and NeMo's vocab.txt, written to ``tmp``."""
    from myna.text.tokenizer import write_vocab_txt

    model_file = tmp / "tokenizer.model"
    source = Path(getattr(tokenizer, "model_path", "") or "")
    if source.is_file():
        model_file.write_bytes(source.read_bytes())
    else:  # myna.load keeps the model in memory only
        model_file.write_bytes(tokenizer._sp.serialized_model_proto())
    sp = tokenizer._sp
    vocab_file = tmp / "tokenizer.vocab"
    vocab_file.write_text("".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.get_piece_size())),
                          encoding="utf-8")
    write_vocab_txt(vocab_file, tmp / "vocab.txt")
    return {"tokenizer.model": model_file, "tokenizer.vocab": vocab_file, "vocab.txt": tmp / "vocab.txt"}


def export_nemo_file(model_path: str | Path, out_path: str | Path) -> Path:
    """``myna export-nemo``: load a myna (or NeMo) archive and write it NeMo-restorable to ``out_path``."""
    from myna.models.io import load_model

    return save_nemo(load_model(model_path), out_path)
