"""NeMo's speech self-supervised model (``SpeechEncDecSelfSupervisedModel``): masked spectrogram
patches, an encoder, and a list of decoder + loss pairs on the final or intermediate layers.

One pass:

1. features from the preprocessor; ``feature_penalty * mean(features^2)`` if set;
2. a clean copy (``spectrograms``, the targets' source; ``dropout_features_q`` applies to it),
   the encoder input (``dropout_features``), then masking (``MaskedPatchAugmentation``, in
   training and evaluation);
3. ``spec_masks`` found by value (|x| < 1e-5, zero past each length) and the encoder;
4. each active ``loss_list`` entry, in order: its decoder reads the encoder output or a layer's
   output (captured by a forward hook, in training and evaluation), transposed if asked, and
   its loss scores it; label losses take the ids of the entry named by ``targets_from_loss``.
5. total = sum of ``loss_alpha * loss`` + feature penalty.

The model has the ``featurize`` and ``encoder`` of myna's ASR models (features (B, T, F) ->
(B, T', D)), so ``init_from_*`` with ``include: [encoder]`` moves the pre-trained encoder into
a Transducer or CTC model unchanged. State-dict keys are NeMo's (``decoder_losses.<name>.
decoder.*``, ``decoder_losses.<name>.loss.quantizer.*``, or ``decoder_ssl.*`` / ``loss.*``).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
from torch import nn

from myna.features import MaskedPatchAugmentation
from myna.losses.ssl import masks_by_value
from myna.models.ssl_losses import ContrastiveLoss, SSLLossOutput

__all__ = ["LossEntry", "SelfSupervisedModel", "SSLOutput"]


@dataclass
class LossEntry:
    """One ``loss_list`` entry's settings (NeMo's keys and defaults)."""

    name: str
    loss_alpha: float = 1.0
    output_from_layer: Optional[str] = None
    targets_from_loss: Optional[str] = None
    start_step: int = 0
    transpose_encoded: bool = False
    is_active: bool = True


@dataclass
class SSLOutput:
    """Everything one pass computed (for logging, parity tests and analysis)."""

    loss: torch.Tensor  # (1,) total, NeMo's shape
    losses: dict[str, SSLLossOutput]
    spectrograms: torch.Tensor  # (B, T, F) clean
    masked: torch.Tensor  # (B, T, F) encoder input
    spec_masks: torch.Tensor  # (B, T, F) float 0/1
    lengths: torch.Tensor  # (B,) feature frames
    encoded: torch.Tensor  # (B, T', D)
    encoded_lengths: torch.Tensor  # (B,)
    layer_outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # as the layer returns them
    decoder_outputs: dict[str, Any] = field(default_factory=dict)
    feature_penalty: Optional[torch.Tensor] = None


class SelfSupervisedModel(nn.Module):
    """NeMo-style SSL pre-training model.

    :param preprocessor: ``(B, L), (B,) -> (B, T, F), (B,)`` mel features.
    :param encoder: ``(B, T, F), (B,) -> (B, T', D), (B,)``.
    :param spec_augment: the masking (``MaskedPatchAugmentation``; applied in every mode).
    :param decoder_losses: name -> (decoder, loss), in ``loss_list`` order.
    :param entries: the :class:`LossEntry` of each name.
    :param single: the ``decoder`` + ``loss`` form (modules named ``decoder_ssl``, ``loss``).
    :param feature_penalty: factor of ``mean(features^2)`` added to the total (0: off).
    :param dropout_features: dropout on the encoder input. :param dropout_features_q: on the targets.
    """

    def __init__(self, preprocessor: nn.Module, encoder: nn.Module, spec_augment: Optional[nn.Module],
                 decoder_losses: Mapping[str, tuple[nn.Module, nn.Module]], entries: Mapping[str, LossEntry],
                 single: bool = False, feature_penalty: float = 0.0, dropout_features: Optional[float] = None,
                 dropout_features_q: Optional[float] = None) -> None:
        super().__init__()
        self.preprocessor, self.encoder, self.spec_augmentation = preprocessor, encoder, spec_augment
        self.single = single
        if single:
            ((name, (decoder, loss)),) = decoder_losses.items()
            self.decoder_ssl, self.loss = decoder, loss
            self.decoder_losses = None
        else:
            self.decoder_losses = nn.ModuleDict({n: nn.ModuleDict({"decoder": d, "loss": l})
                                                 for n, (d, l) in decoder_losses.items()})
        self.entries = dict(entries)
        self.feature_penalty = float(feature_penalty or 0.0)
        self.dropout_features = nn.Dropout(dropout_features) if dropout_features is not None else None
        self.dropout_features_q = nn.Dropout(dropout_features_q) if dropout_features_q is not None else None
        self.tokenizer = None
        self.global_step = 0  # the last training step seen; decides start_step activity in evaluation
        self._check_entries()
        self._captured: dict[str, Any] = {}
        for layer in sorted({e.output_from_layer for e in self.entries.values() if e.output_from_layer}):
            self.encoder.get_submodule(layer).register_forward_hook(self._capture_hook(layer))

    # ---- configuration checks -------------------------------------------------------------
    def _check_entries(self) -> None:
        names = list(self.entries)
        for i, (name, entry) in enumerate(self.entries.items()):
            where = f"model.loss_list.{name}"
            if not entry.is_active:  # never runs (NeMo builds it all the same)
                continue
            source = entry.targets_from_loss
            if source is not None:
                if source not in self.entries:
                    raise ValueError(f"{where}.targets_from_loss={source!r} names no loss_list entry; entries: {names}")
                if names.index(source) >= i:
                    raise ValueError(f"{where}.targets_from_loss={source!r} must name an earlier entry (losses run in "
                                     f"loss_list order: {names})")
                if not getattr(self.module_pair(source)[1], "store_ids", False):
                    raise ValueError(f"{where}.targets_from_loss={source!r}: that loss stores no target ids "
                                     "(a ContrastiveLoss with quantized_targets and store_ids)")
                if not getattr(self.module_pair(source)[1], "quantized_targets", True):
                    raise ValueError(f"{where}.targets_from_loss={source!r}: that loss has no quantizer "
                                     "(quantized_targets: false) and so no ids")
            elif getattr(self.module_pair(name)[1], "needs_labels", False):
                raise ValueError(f"{where}: {type(self.module_pair(name)[1]).__name__} needs targets; set "
                                 "targets_from_loss to an earlier ContrastiveLoss entry")
            if entry.output_from_layer is not None:
                try:
                    self.encoder.get_submodule(entry.output_from_layer)
                except AttributeError:
                    layers = [n for n, _ in self.encoder.named_children()]
                    raise ValueError(f"{where}.output_from_layer={entry.output_from_layer!r} is not a module of the "
                                     f"encoder (its children: {layers}; Conformer layers are layers.<i>)") from None

    def min_duration(self) -> float:
        """Shortest usable utterance in seconds: one masked patch of features (0 without patches)."""
        patch = getattr(self.spec_augmentation, "patch_size", 0)
        hop, rate = getattr(self.preprocessor, "hop_length", 0), getattr(self.preprocessor, "sample_rate", 0)
        return patch * hop / rate if patch and hop and rate else 0.0

    @property
    def num_codevectors(self) -> Optional[int]:
        """G * V of the first quantized ContrastiveLoss (None without one)."""
        for name in self.entries:
            loss = self.module_pair(name)[1]
            if isinstance(loss, ContrastiveLoss) and loss.quantized_targets:
                return loss.quantizer.num_codevectors
        return None

    def module_pair(self, name: str) -> tuple[nn.Module, nn.Module]:
        """(decoder, loss) of a ``loss_list`` entry."""
        if self.single:
            return self.decoder_ssl, self.loss
        pair = self.decoder_losses[name]
        return pair["decoder"], pair["loss"]

    def _capture_hook(self, layer: str):
        def hook(module, inputs, output):
            self._captured[layer] = output[0] if isinstance(output, tuple) else output
        return hook

    # ---- steps and randomness -------------------------------------------------------------
    def is_active(self, name: str) -> bool:
        """Entry ``name`` runs: ``is_active`` and the last training step >= its ``start_step``."""
        entry = self.entries[name]
        return entry.is_active and self.global_step >= entry.start_step

    def set_num_updates(self, step: int) -> None:
        """Training step ``step``: Gumbel temperatures and start_step activity."""
        self.global_step = int(step)
        for name in self.entries:
            loss = self.module_pair(name)[1]
            if hasattr(loss, "set_num_updates"):
                loss.set_num_updates(step)

    @staticmethod
    def step_generators(step: Optional[int]) -> tuple[random.Random, torch.Generator]:
        """(python, torch) generators for a step's patches, bands and negatives: a function of the
        run's seed, the step and the DDP rank, so a resumed run draws the same."""
        gen = torch.Generator()
        if step is None:
            seed = int(torch.randint(0, 2**62, ()))
        else:
            seed = (torch.initial_seed() * 1_000_003 + step * 7919 + int(os.environ.get("RANK", 0))) % (2**62)
        gen.manual_seed(seed)
        return random.Random(seed), gen

    # ---- passes ---------------------------------------------------------------------------
    def featurize(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) float waveform, (B,) -> features (B, T, F), lengths (B,)."""
        return self.preprocessor(audio, audio_lengths)

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor, tokens: Optional[torch.Tensor] = None,
                token_lengths: Optional[torch.Tensor] = None, step: Optional[int] = None,
                **unused) -> dict[str, torch.Tensor]:
        """One pass with fresh masks and negatives.

        :param audio: (B, L) float. :param audio_lengths: (B,) int64.
        :param tokens, token_lengths: unused (the losses' targets come from the quantizer).
        :param step: optimizer step (training: temperatures, start_step; always: seeds the draws).
        :return: scalars: ``loss`` (the total), ``loss_<name>`` per active entry (unweighted),
            ``feature_penalty`` if set, and the contrastive entries' ``accuracy``,
            ``prob_perplexity``, ``code_perplexity``, ``temperature``, ``num_masked``.
        """
        if self.training and step is not None:
            self.set_num_updates(step)
        features, lengths = self.featurize(audio, audio_lengths)
        rng, gen = self.step_generators(step)
        aug_mask = None
        if isinstance(self.spec_augmentation, MaskedPatchAugmentation):
            self.spec_augmentation.rng, self.spec_augmentation.generator = rng, gen
            aug_mask = self.spec_augmentation.draw(lengths.cpu(), features.shape[1], features.shape[2])
        out = self.forward_features(features, lengths, aug_mask=aug_mask, generator=gen)
        result = {"loss": out.loss.reshape(())}
        for name, loss_out in out.losses.items():
            result[f"loss_{name}"] = loss_out.loss.detach()
            for key, value in loss_out.stats.items():
                result.setdefault(key, value)
        if out.feature_penalty is not None:
            result["feature_penalty"] = out.feature_penalty.detach()
        return result

    def forward_features(self, features: torch.Tensor, lengths: torch.Tensor, aug_mask: Optional[torch.Tensor] = None,
                         negative_indices: Optional[Mapping[str, torch.Tensor]] = None,
                         generator: Optional[torch.Generator] = None) -> SSLOutput:
        """The pass from features, with given masks and negatives (replays recorded draws).

        :param features: (B, T, F). :param lengths: (B,) frames.
        :param aug_mask: (B, T, F) bool cells to zero; None runs ``spec_augmentation`` itself.
        :param negative_indices: loss name -> recorded negative draw (see ContrastiveLoss).
        :param generator: torch generator for negatives drawn here.
        """
        penalty = features.float().pow(2).mean() * self.feature_penalty if self.feature_penalty else None
        spectrograms = features.detach().clone()
        if self.dropout_features is not None:
            features = self.dropout_features(features)
        if self.dropout_features_q is not None:
            spectrograms = self.dropout_features_q(spectrograms)
        if aug_mask is not None:
            features = features.masked_fill(aug_mask.to(features.device), 0.0)
        elif self.spec_augmentation is not None:
            features = self.spec_augmentation(features, lengths)
        spec_masks = masks_by_value(features.detach(), lengths)
        self._captured = {}
        encoded, encoded_lengths = self.encoder(features, lengths)
        out = SSLOutput(loss=encoded.new_zeros(1), losses={}, spectrograms=spectrograms, masked=features,
                        spec_masks=spec_masks, lengths=lengths, encoded=encoded, encoded_lengths=encoded_lengths,
                        layer_outputs=dict(self._captured), feature_penalty=penalty)
        for name, entry in self.entries.items():
            if not self.is_active(name):
                continue
            decoder, loss = self.module_pair(name)
            # NeMo's layouts: the final output is (B, D, T'); a captured layer output is as the
            # layer returns it (Conformer: (B, T', D)); decoders take (B, D, T').
            x = encoded.transpose(1, 2) if entry.output_from_layer is None else out.layer_outputs[entry.output_from_layer]
            if entry.transpose_encoded:
                x = x.transpose(-2, -1)
            feat_in = getattr(decoder, "feat_in", None)
            if feat_in is not None and x.shape[1] != feat_in:
                raise ValueError(f"model.loss_list.{name}: the decoder takes {feat_in} channels but gets a tensor of "
                                 f"shape {tuple(x.shape)} (channels second); check transpose_encoded="
                                 f"{entry.transpose_encoded} and output_from_layer={entry.output_from_layer!r}")
            x = x.transpose(1, 2)  # myna's decoders take (B, T', D)
            if getattr(loss, "needs_labels", False):
                source = out.losses[entry.targets_from_loss]
                targets = source.target_ids
                target_lengths = source.target_lengths if source.target_lengths is not None else encoded_lengths
                dec_out = decoder(x, targets, target_lengths) if getattr(decoder, "needs_labels", False) else decoder(x)
                result = loss(spec_masks=spec_masks, decoder_outputs=dec_out, targets=targets,
                              decoder_lengths=encoded_lengths, target_lengths=target_lengths)
            else:
                dec_out = decoder(x)
                given = None if negative_indices is None else negative_indices.get(name)
                kwargs = {"negative_indices": given} if isinstance(loss, ContrastiveLoss) else {}
                if isinstance(loss, ContrastiveLoss) and given is None and generator is not None:
                    kwargs["generator"] = generator
                try:
                    result = loss(spectrograms=spectrograms, spec_masks=spec_masks, decoder_outputs=dec_out,
                                  decoder_lengths=encoded_lengths, **kwargs)
                except ValueError as err:
                    raise ValueError(f"model.loss_list.{name}.loss: {err}") from err
            out.decoder_outputs[name] = dec_out
            out.losses[name] = result
            out.loss = out.loss + result.loss * entry.loss_alpha
        if penalty is not None:
            out.loss = out.loss + penalty
        return out

    def transcribe(self, *args, **kwargs):
        raise ValueError("a self-supervised model has no output vocabulary; fine-tune its encoder into a CTC or "
                         "Transducer recipe (init_from_nemo_model / init_from_pretrained_model with include: [encoder])")
