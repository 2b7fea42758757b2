"""Transducer (RNN-T) model: featurizer -> encoder -> (prediction network, joiner), optional CTC head.

The model composes already-built parts and owns one method per stage, so tests and users can
inspect each: ``featurize``, ``encode``, ``forward_transducer``, ``forward_ctc``, ``transcribe``.
Attribute names follow NeMo's (``preprocessor``, ``encoder``, ``decoder``, ``joint``,
``ctc_decoder``) so a NeMo state dict loads by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from myna.decoding.greedy import Hypothesis, ctc_greedy_search, transducer_greedy_search
from myna.models.base import SpeechModel, ctc_loss_mean_batch
from myna.losses import rnnt as rnnt_losses

__all__ = ["TransducerLossConfig", "TransducerModel", "fused_joint_loss"]


@dataclass
class TransducerLossConfig:
    """``model.loss``: the full RNN-T loss, or the pruned loss (k2 / icefall recipe).

    ``simple_loss_scale``: weight of the trivial-joiner loss after warm-up; during the first
    ``warm_step`` steps it decays from 1 and the pruned loss' weight grows from 0.1 to 1.
    ``ctc_weight``: weight of the auxiliary CTC loss for hybrid models (NeMo's ``aux_ctc``).
    """

    name: str = "full"
    s_range: int = 5
    simple_loss_scale: float = 0.5
    lm_only_scale: float = 0.25
    am_only_scale: float = 0.0
    warm_step: int = 2000
    ctc_weight: float = 0.0

    def __post_init__(self):
        if self.name not in ("full", "pruned"):
            raise ValueError(f"model.loss.name={self.name!r}: choose 'full' or 'pruned'")
        if self.s_range < 1:
            raise ValueError(f"model.loss.s_range={self.s_range} must be >= 1")


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
            loss = rnnt_losses.transducer_loss(logits, targets, encoded_lengths, token_lengths,
                                               blank=self.blank_id, reduction="mean",
                                               inplace_grad=logits.requires_grad)
            return {"loss": loss, "rnnt_loss": loss}
        am = self.simple_am_proj(encoded)  # (B, T, V+1)
        lm = self.simple_lm_proj(pred_out)  # (B, U+1, V+1)
        f = self.joint.project_encoder(encoded)
        g = self.joint.project_prediction(pred_out)
        simple, pruned = rnnt_losses.pruned_transducer_loss(
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

    def decode(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor) -> list[Hypothesis]:
        """Batched greedy search over encoder output (B, T', D); fills ``text`` when a tokenizer is set."""
        hyps = transducer_greedy_search(encoded, encoded_lengths, self.decoder, self.joint, self.blank_id,
                                        self.max_symbols_per_step)
        return self._attach_text(hyps)

    def decode_ctc(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor) -> list[Hypothesis]:
        """CTC best-path decoding with the auxiliary head."""
        if self.ctc_decoder is None:
            raise ValueError("this model has no CTC head")
        return self._attach_text(ctc_greedy_search(self.ctc_decoder(encoded), encoded_lengths, self.blank_id))


# ---- sub-batched joint + loss ---------------------------------------------------------------
def fused_joint_loss(joint: nn.Module, encoded: torch.Tensor, pred_out: torch.Tensor, targets: torch.Tensor,
                     encoded_lengths: torch.Tensor, target_lengths: torch.Tensor, blank: int,
                     fused_batch_size: int) -> torch.Tensor:
    """Full RNN-T loss (mean over utterances) computed ``fused_batch_size`` utterances at a time.

    Each slice is cut to its own longest frame and target counts, its joint logits
    (b, T_s, U_s+1, V+1) are built, scored and back-propagated to the projected joint inputs and
    the ``joint_net`` parameters right away, then freed; only the small gradients are kept for
    the backward pass. Equal to ``transducer_loss(joint(encoded, pred_out), ...)`` in value and
    in gradients (up to float rounding).

    Args:
        joint: an ``RNNTJoint`` (``project_encoder``, ``project_prediction``,
            ``joint_after_projection``, ``joint_net``).
        encoded: (B, T, D) float encoder output.
        pred_out: (B, U+1, H) float prediction-network output.
        targets: (B, U) int64 target ids (values past ``target_lengths`` are ignored).
        encoded_lengths: (B,) int64 valid frames, <= T.
        target_lengths: (B,) int64 valid targets, <= U.
        blank: blank class id.
        fused_batch_size: utterances per slice, >= 1.

    Returns:
        scalar float32 loss: sum of per-utterance NLLs / B.
    """
    f = joint.project_encoder(encoded)  # (B, T, J)
    g = joint.project_prediction(pred_out)  # (B, U+1, J)
    params = [p for p in joint.joint_net.parameters() if p.requires_grad]
    if not torch.is_grad_enabled():
        params = []
    return _FusedJointLoss.apply(f, g, targets, encoded_lengths, target_lengths, joint.joint_after_projection,
                                 blank, int(fused_batch_size), *params)


class _FusedJointLoss(torch.autograd.Function):
    """loss = sum_slices transducer_loss(joint_fn(f_s, g_s)) / B, with gradients taken per slice
    in forward (f: (B, T, J), g: (B, U+1, J), params: the joint_fn's trainable tensors)."""

    @staticmethod
    def forward(ctx, f, g, targets, f_lengths, t_lengths, joint_fn, blank, fused_batch_size, *params):
        batch = f.size(0)
        wrt = [f, g, *params]
        need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], *ctx.needs_input_grad[8:]]
        grads = [torch.zeros_like(t) if n else None for t, n in zip(wrt, need)]
        total = torch.zeros((), dtype=torch.float32, device=f.device)
        f_lengths_cpu, t_lengths_cpu = f_lengths.tolist(), t_lengths.tolist()
        for start in range(0, batch, fused_batch_size):
            end = min(start + fused_batch_size, batch)
            t_max = max(f_lengths_cpu[start:end])
            u_max = max(t_lengths_cpu[start:end])
            with torch.enable_grad():
                f_s = f[start:end, :t_max].detach().requires_grad_(need[0])  # (b, T_s, J)
                g_s = g[start:end, : u_max + 1].detach().requires_grad_(need[1])  # (b, U_s+1, J)
                logits = joint_fn(f_s.unsqueeze(2), g_s.unsqueeze(1))  # (b, T_s, U_s+1, V+1)
                loss = rnnt_losses.transducer_loss(
                    logits, targets[start:end, :u_max], f_lengths[start:end], t_lengths[start:end], blank=blank,
                    reduction="sum", inplace_grad=logits.requires_grad)
                inputs = [t for t, n in zip([f_s, g_s, *params], need) if n]
                if inputs:
                    slice_grads = iter(torch.autograd.grad(loss, inputs))
                    if need[0]:
                        grads[0][start:end, :t_max] += next(slice_grads)
                    if need[1]:
                        grads[1][start:end, : u_max + 1] += next(slice_grads)
                    for i in range(2, len(wrt)):
                        if need[i]:
                            grads[i] += next(slice_grads)
            total += loss.detach().float()
            del logits, loss
        ctx.batch = batch
        ctx.save_for_backward(*[gr if gr is not None else torch.empty(0) for gr in grads])
        ctx.has_grad = [gr is not None for gr in grads]
        return total / batch

    @staticmethod
    def backward(ctx, grad_out):
        scale = grad_out / ctx.batch  # d(total / B) / d(slice sums)
        out = [gr * scale.to(gr.dtype) if has else None for gr, has in zip(ctx.saved_tensors, ctx.has_grad)]
        f_grad, g_grad, *param_grads = out
        return (f_grad, g_grad, None, None, None, None, None, None, *param_grads)
