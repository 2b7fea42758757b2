"""Fine-tuning helpers: initialise from a checkpoint with include/exclude filters, change vocabulary.

>>> report = init_from_checkpoint(model, "pretrained.nemo", exclude=["decoder", "joint"])
>>> print(report.summary())
>>> change_vocabulary(model, load_tokenizer("tokenizers/digits_64"))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from myna.interop.nemo import find_model_file, read_weights

__all__ = ["InitReport", "init_from_checkpoint", "read_any_weights", "filter_state_dict", "change_vocabulary"]

log = logging.getLogger("myna.finetune")


@dataclass
class InitReport:
    """What an initialisation loaded and what it left as it was."""

    source: str
    loaded: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    mis_shaped: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    not_initialised: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"initialised from {self.source}: {len(self.loaded)} tensors loaded"]
        if self.excluded:
            lines.append(f"  {len(self.excluded)} excluded by include/exclude filters")
        for key, theirs, ours in self.mis_shaped:
            lines.append(f"  not loaded, shape mismatch: {key}: checkpoint {theirs} vs model {ours}")
        if self.unexpected:
            lines.append(f"  {len(self.unexpected)} checkpoint tensors unknown to the model: {_clip(self.unexpected)}")
        if self.not_initialised:
            lines.append(f"  {len(self.not_initialised)} model tensors keep their fresh values: {_clip(self.not_initialised)}")
        return "\n".join(lines)


def _clip(keys: Sequence[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (" ..." if len(keys) > n else "")


def filter_state_dict(state_dict: Mapping[str, torch.Tensor], include: Sequence[str] | None = None,
                      exclude: Sequence[str] | None = None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Keep keys containing any ``include`` string (all if None) and none of the ``exclude`` strings,
    as NeMo's ``init_from_*`` filters do (substring match). Returns (kept, excluded keys)."""
    kept, dropped = {}, []
    for key, value in state_dict.items():
        if (include and not any(s in key for s in include)) or (exclude and any(s in key for s in exclude)):
            dropped.append(key)
        else:
            kept[key] = value
    return kept, dropped


def read_any_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict under myna's names from a ``.nemo``, a Lightning ``.ckpt``, a myna run folder,
    a Hugging Face wav2vec 2.0 folder or a fairseq / NVIDIA DLE wav2vec 2.0 checkpoint (``.pt``)."""
    from myna.interop.fairseq import is_fairseq_checkpoint, read_fairseq_weights
    from myna.interop.hf import is_hf_folder, read_hf_weights

    if Path(path).is_dir():
        if is_hf_folder(path):
            return read_hf_weights(path)
        path = find_model_file(path)  # a myna train / pretrain run folder: its final model
    if is_fairseq_checkpoint(path):
        return read_fairseq_weights(path)
    return read_weights(path)


def init_from_checkpoint(model: nn.Module, path: str | Path, include: Sequence[str] | None = None,
                         exclude: Sequence[str] | None = None) -> InitReport:
    """Copy matching tensors from a .nemo (NeMo's or myna's), a .ckpt, an HF wav2vec 2.0 folder or a
    fairseq / DLE ``.pt`` into ``model`` (``include=["encoder"]`` takes a pre-trained encoder).

    Tensors whose shapes differ are not loaded and are named in the report, never skipped
    silently; the report is also logged.
    """
    path = Path(path)
    theirs, excluded = filter_state_dict(read_any_weights(path), include, exclude)
    ours = model.state_dict()
    report = InitReport(source=str(path), excluded=sorted(excluded))
    to_load = {}
    for key, value in theirs.items():
        if key not in ours:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(ours[key].shape):
            report.mis_shaped.append((key, tuple(value.shape), tuple(ours[key].shape)))
        else:
            to_load[key] = value
    model.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    report.not_initialised = sorted(set(ours) - set(to_load))
    report.unexpected.sort()
    log.info("%s", report.summary())
    return report


def _copy_matching(new: nn.Module, old: nn.Module, skip: Sequence[str]) -> list[str]:
    """Copy every tensor of ``old`` into ``new`` where names and shapes agree, except names in skip."""
    old_state, new_state = old.state_dict(), new.state_dict()
    copied = {k: v for k, v in old_state.items()
              if k in new_state and k not in skip and new_state[k].shape == v.shape}
    new.load_state_dict(copied, strict=False)
    return sorted(set(new_state) - set(copied))


def change_vocabulary(model: nn.Module, tokenizer) -> list[str]:
    """Switch ``model`` to ``tokenizer``'s vocabulary, keeping everything that does not depend on it.

    The encoder is untouched; the prediction network keeps its LSTM, the joiner its encoder and
    prediction projections; the embedding, the joiner's output layer and the CTC head are rebuilt
    for the new size (freshly initialised). Returns the names of the re-initialised tensors.
    Works for TransducerModel (with or without CTC head) and CTCModel.
    """
    from myna.models.ctc import CTCModel
    from myna.nn.ctc_head import CTCHead
    from myna.nn.joint import RNNTJoint
    from myna.nn.prediction import RNNTPredictionNetwork

    vocab = tokenizer.vocab_size
    fresh: list[str] = []
    device = next(model.parameters()).device

    def new_head(old: CTCHead, prefix: str) -> CTCHead:
        head = CTCHead(feat_in=old.feat_in, num_classes=vocab).to(device)
        fresh.extend(f"{prefix}.{k}" for k in head.state_dict())
        return head

    if isinstance(model, CTCModel):
        model.decoder = new_head(model.decoder, "decoder")
    else:
        old_pred: RNNTPredictionNetwork = model.decoder
        pred = RNNTPredictionNetwork(vocab_size=vocab, pred_hidden=old_pred.pred_hidden,
                                     pred_rnn_layers=old_pred.pred_rnn_layers, blank_as_pad=old_pred.blank_as_pad,
                                     rnn_hidden_size=old_pred.rnn_hidden_size,
                                     random_state_sampling=old_pred.random_state_sampling).to(device)
        fresh += [f"decoder.{k}" for k in _copy_matching(pred, old_pred, skip=["prediction.embed.weight"])]
        model.decoder = pred
        old_joint: RNNTJoint = model.joint
        dropout = next((m.p for m in old_joint.joint_net if isinstance(m, nn.Dropout)), 0.0)
        activation = type(old_joint.joint_net[0]).__name__.lower()
        joint = RNNTJoint(encoder_hidden=old_joint.encoder_hidden, pred_hidden=old_joint.pred_hidden,
                          joint_hidden=old_joint.joint_hidden, num_classes=vocab, activation=activation,
                          dropout=dropout).to(device)
        out_layer = f"joint_net.{len(joint.joint_net) - 1}"
        fresh += [f"joint.{k}" for k in _copy_matching(joint, old_joint, skip=[f"{out_layer}.weight", f"{out_layer}.bias"])]
        model.joint = joint
        model.blank_id = joint.num_classes_with_blank - 1
        if getattr(model, "simple_am_proj", None) is not None:
            model.simple_am_proj = nn.Linear(model.simple_am_proj.in_features, vocab + 1).to(device)
            model.simple_lm_proj = nn.Linear(model.simple_lm_proj.in_features, vocab + 1).to(device)
            fresh += ["simple_am_proj.*", "simple_lm_proj.*"]
        if model.ctc_decoder is not None:
            model.ctc_decoder = new_head(model.ctc_decoder, "ctc_decoder")
    model.blank_id = vocab
    model.tokenizer = tokenizer
    log.info("vocabulary changed to %d pieces; re-initialised: %s", vocab, _clip(fresh))
    return fresh
