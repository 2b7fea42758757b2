"""Transducer (RNN-T) model: featurizer -> encoder -> (prediction network, joiner), optional CTC head.

The model composes already-built parts and owns one method per stage, so tests and users can
inspect each: ``featurize``, ``encode``, ``forward_transducer``, ``forward_ctc``, ``transcribe``; and says how it
decodes (:class:`myna.decoding.DecodableModel`).
Attribute names follow NeMo's (``preprocessor``, ``encoder``, ``decoder``, ``joint``,
``ctc_decoder``) so a NeMo state dict loads by name.
"""

from __future__ import annotations

import torch
from torch import nn

from myna.decoding import CTC_STRATEGIES, TRANSDUCER_STRATEGIES
from myna.decoding.greedy import Hypothesis, ctc_greedy_search, transducer_greedy_search
from myna.losses.config import TransducerLossConfig
from myna.losses.ctc import ctc_loss_mean_batch
from myna.losses.fused_joint import fused_joint_loss
from myna.losses.rnnt import pruned_transducer_loss, transducer_loss
from myna.models.base import SpeechModel

__all__ = ["TransducerModel"]


class TransducerModel(SpeechModel):
    """RNN-T (optionally hybrid RNN-T + CTC) speech recogniser.

    Args:
        preprocessor: waveform -> features module, ``(B, L), (B,) -> (B, T, F), (B,)``.
        encoder: ``(B, T, F), (B,) -> (B, T', D), (B,)``.
        decoder: prediction network, ``(B, U), (B,) -> (B, U+1, H), state``, with ``step``.
        joint: joiner with ``num_classes_with_blank`` outputs; blank is the last class.
        spec_augment: optional training-time masking ``(B, T, F), (B,) -> (B, T, F)``.
        loss: loss choice and weights.
        ctc_decoder: optional CTC head ``(B, T', D) -> (B, T', V+1)`` log-probs (hybrid models).
        tokenizer: object with ``decode(ids) -> str`` used by ``transcribe``.
        max_symbols_per_step: greedy-search cap of labels per frame.
        fused_batch_size: with the full loss, compute joint + loss over slices of this many
            utterances, back-propagating each slice inside the forward pass, so the
            (B, T, U+1, V+1) logits never exist whole (NeMo's ``joint.fused_batch_size``). Peak
            joint memory scales with the slice instead of the batch; loss and gradients are equal
            to the unfused ones. None or 0: one joint over the whole batch. Ignored by the pruned
            loss, which never builds the full lattice.
    """

    def __init__(self, preprocessor: nn.Module, encoder: nn.Module, decoder: nn.Module, joint: nn.Module,
                 spec_augment: nn.Module | None = None, loss: TransducerLossConfig | None = None,
                 ctc_decoder: nn.Module | None = None, tokenizer=None, max_symbols_per_step: int = 10,
                 fused_batch_size: int | None = None):
        super().__init__(preprocessor, encoder, spec_augment, tokenizer)
        self.decoder = decoder
        self.joint = joint
        self.ctc_decoder = ctc_decoder
        self.loss_config = loss or TransducerLossConfig()
        self.max_symbols_per_step = max_symbols_per_step
        self.blank_id = joint.num_classes_with_blank - 1
        if fused_batch_size is not None and int(fused_batch_size) < 0:
            raise ValueError(f"model.joint.fused_batch_size={fused_batch_size} must be >= 0 (0 or null: unfused)")
        self.fused_batch_size = int(fused_batch_size or 0)
        if self.loss_config.ctc_weight > 0 and ctc_decoder is None:
            raise ValueError("model.loss.ctc_weight > 0 needs a CTC head (model.aux_ctc)")
        if self.loss_config.name == "pruned":
            vocab = joint.num_classes_with_blank
            # The trivial joiner of the pruned loss scores am + lm directly in vocabulary space.
            self.simple_am_proj = nn.Linear(encoder.output_dim, vocab)
            self.simple_lm_proj = nn.Linear(decoder.output_dim, vocab)

    # ---- losses -------------------------------------------------------------------------
    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor, tokens: torch.Tensor,
                token_lengths: torch.Tensor, step: int | None = None, **unused) -> dict[str, torch.Tensor]:
        """Training losses for a batch.

        Args:
            audio: (B, L) float32; audio_lengths: (B,) int64.
            tokens: (B, U) int64 target ids padded with anything; token_lengths: (B,) int64.
            step: optimizer step, for the pruned loss' warm-up weighting.

        Returns:
            dict with ``loss`` (scalar, mean over utterances of the summed NLL) and its parts.
        """
        features, feature_lengths = self.featurize(audio, audio_lengths)
        encoded, encoded_lengths = self.encode(features, feature_lengths)
        out = self.forward_transducer(encoded, encoded_lengths, tokens, token_lengths, step)
        if self.ctc_decoder is not None and self.loss_config.ctc_weight > 0:
            out["ctc_loss"] = self.forward_ctc(encoded, encoded_lengths, tokens, token_lengths)
            w = self.loss_config.ctc_weight
            out["loss"] = (1 - w) * out["loss"] + w * out["ctc_loss"]
        out["encoded_lengths"] = encoded_lengths
        return out

    def forward_transducer(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor, tokens: torch.Tensor,
                           token_lengths: torch.Tensor, step: int | None = None) -> dict[str, torch.Tensor]:
        """RNN-T loss from encoder output (B, T, D) and targets (B, U)."""
        tokens = tokens.long()
        max_u = int(token_lengths.max()) if tokens.numel() else 0
        tokens = tokens[:, :max_u]
        targets = torch.where(torch.arange(max_u, device=tokens.device) < token_lengths[:, None], tokens,
                              torch.zeros_like(tokens))
        pred_out, _ = self.decoder(targets, token_lengths)  # (B, U+1, H)
        cfg = self.loss_config
        if cfg.name == "full" and 0 < self.fused_batch_size < encoded.size(0):
            loss = fused_joint_loss(self.joint, encoded, pred_out, targets, encoded_lengths, token_lengths,
                                    self.blank_id, self.fused_batch_size)
            return {"loss": loss, "rnnt_loss": loss}
        if cfg.name == "full":
            logits = self.joint(encoded, pred_out)  # (B, T, U+1, V+1)
            # Nothing reads the logits after backward: their gradient overwrites them (one
            # (B, T, U+1, V+1) buffer less).
            loss = transducer_loss(logits, targets, encoded_lengths, token_lengths,
                                               blank=self.blank_id, reduction="mean",
                                               inplace_grad=logits.requires_grad)
            return {"loss": loss, "rnnt_loss": loss}
        am = self.simple_am_proj(encoded)  # (B, T, V+1)
        lm = self.simple_lm_proj(pred_out)  # (B, U+1, V+1)
        f = self.joint.project_encoder(encoded)
        g = self.joint.project_prediction(pred_out)
        simple, pruned = pruned_transducer_loss(
            am, lm, self.joint.joint_after_projection, targets, encoded_lengths, token_lengths,
            blank=self.blank_id, s_range=cfg.s_range, lm_only_scale=cfg.lm_only_scale,
            am_only_scale=cfg.am_only_scale, reduction="mean", joiner_am=f, joiner_lm=g)
        simple_scale, pruned_scale = self.pruned_loss_weights(step)
        loss = simple_scale * simple + pruned_scale * pruned
        return {"loss": loss, "simple_loss": simple, "pruned_loss": pruned}

    def pruned_loss_weights(self, step: int | None) -> tuple[float, float]:
        """(simple, pruned) loss weights: icefall's warm-up, constant once ``step >= warm_step``."""
        cfg = self.loss_config
        if step is None or cfg.warm_step <= 0 or step >= cfg.warm_step:
            return cfg.simple_loss_scale, 1.0
        progress = step / cfg.warm_step
        return 1.0 - progress * (1.0 - cfg.simple_loss_scale), 0.1 + 0.9 * progress

    def forward_ctc(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor, tokens: torch.Tensor,
                    token_lengths: torch.Tensor) -> torch.Tensor:
        """Auxiliary CTC loss (NeMo's ``mean_batch``) from encoder output (B, T', D)."""
        return ctc_loss_mean_batch(self.ctc_decoder(encoded), encoded_lengths, tokens, token_lengths, self.blank_id)

    def eval_loss(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor, tokens: torch.Tensor,
                  token_lengths: torch.Tensor) -> torch.Tensor:
        """The RNN-T training loss (without the pruned loss' warm-up weighting)."""
        return self.forward_transducer(encoded, encoded_lengths, tokens, token_lengths)["loss"]

    # ---- inference ----------------------------------------------------------------------
    @property
    def decoding_strategies(self) -> tuple[str, ...]:
        """Transducer greedy and beam searches, and the CTC ones when the model has a CTC head."""
        return TRANSDUCER_STRATEGIES + (CTC_STRATEGIES if self.ctc_decoder is not None else ())

    def transducer_parts(self) -> tuple[nn.Module, nn.Module]:
        """(prediction network, joint) for :mod:`myna.decoding`."""
        return self.decoder, self.joint

    def ctc_log_probs(self, encoded: torch.Tensor) -> torch.Tensor:
        """(B, T', D) encoder output -> (B, T', V+1) log-probs of the auxiliary CTC head."""
        if self.ctc_decoder is None:
            raise ValueError("this Transducer model has no CTC head (model.aux_ctc)")
        return self.ctc_decoder(encoded)

    def decode(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor) -> list[Hypothesis]:
        """Batched greedy search over encoder output (B, T', D); fills ``text`` when a tokenizer is set."""
        hyps = transducer_greedy_search(encoded, encoded_lengths, self.decoder, self.joint, self.blank_id,
                                        self.max_symbols_per_step)
        return self._attach_text(hyps)

    def decode_ctc(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor) -> list[Hypothesis]:
        """CTC best-path decoding with the auxiliary head."""
        return self._attach_text(ctc_greedy_search(self.ctc_log_probs(encoded), encoded_lengths, self.blank_id))
