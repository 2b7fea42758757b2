"""NeMo's SSL loss modules: ContrastiveLoss (with its quantizer), MLMLoss, CTCLossForSSL,
RNNTLossForSSL, and the RNN-T decoder+joint head the last one reads.

Each loss returns an :class:`SSLLossOutput`; a loss that makes targets for others
(ContrastiveLoss with ``store_ids``) puts them in ``target_ids`` / ``target_lengths``, which the
model hands to the entries naming it in ``targets_from_loss``. Spectrograms and masks are
myna's (B, T, F); decoder outputs (B, T', C).

ContrastiveLoss follows NeMo exactly where NeMo is defined: the quantizer shares one codebook
across groups (``combine_groups``), negatives are drawn by ``torch.multinomial`` without
replacement and may include the positive (which then gets -inf), the cross-entropy is summed and
scaled by ``multiplier / B``. Where NeMo fails deep inside (more negatives than candidates,
unequal masked-step counts per utterance, step sizes that do not fit) it is a ValueError naming
the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from myna.losses import rnnt as rnnt_losses
from myna.losses.contrastive import contrastive_logits, nemo_contrastive_loss
from myna.losses.negatives import sample_negatives_nemo
from myna.losses.ssl import StepCountError, group_steps, masked_steps, masked_steps_by_factor, mlm_loss, reduce_ids
from myna.losses.ctc import ctc_loss_mean_batch
from myna.nn.joint import RNNTJoint
from myna.nn.prediction import RNNTPredictionNetwork
from myna.nn.quantizer import GumbelVectorQuantizer

__all__ = ["SSLLossOutput", "ContrastiveLoss", "MLMLoss", "CTCLossForSSL", "RNNTLossForSSL", "RNNTDecoderJointSSL",
           "TransducerHeadOutput"]


@dataclass
class SSLLossOutput:
    """One loss' value and what it shares or logs.

    Attributes:
        loss: scalar float32, unweighted.
        target_ids: (B, U) int64 ids for later losses (ContrastiveLoss with ``store_ids``).
        target_lengths: (B,) int64 or None (then later losses use the encoder lengths).
        stats: scalars to log (accuracy, perplexity, temperature, masked steps).
        stages: intermediate tensors (for parity tests and analysis).
    """

    loss: torch.Tensor
    target_ids: Optional[torch.Tensor] = None
    target_lengths: Optional[torch.Tensor] = None
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    stages: dict[str, torch.Tensor] = field(default_factory=dict)


class ContrastiveLoss(nn.Module):
    """Contrastive prediction of (quantized) spectrogram targets at masked steps (NeMo's).

    :param in_dim: spectrogram bins F.
    :param proj_dim: P, target size (the decoder's ``feat_out``).
    :param combine_time_steps: spectrogram frames per decoder step (encoder subsampling); the
        target of a step is its r frames x F bins, ``in_dim * combine_time_steps`` values.
    :param num_negatives: K distractors per prediction.
    :param quantized_targets: Gumbel product quantizer targets (True) or a linear projection.
    :param codebook_size: V, codevectors per group. :param num_groups: G.
    :param prob_ppl_weight: weight of the codebook-diversity term (added x predictions).
    :param logit_temp: cosine temperature.
    :param reduce: cross-entropy reduction, ``sum`` (NeMo) or ``mean``.
    :param sample_from_same_utterance_only: distractors come from the prediction's own
        utterance (one draw of time slots serves every utterance; masked-step counts must be
        equal per utterance, which whole patches of ``MaskedPatchAugmentation`` ensure).
    :param sample_from_non_masked: distractors from all steps, not only masked ones.
    :param sample_from_codebook: (batch-wide) distractors are random codebook entries.
    :param group_loss: (batch-wide) score each group against all V codevectors of its codebook.
    :param quantizer_temp_start, quantizer_temp_min, quantizer_temp_decay: Gumbel temperature
        ``max(start * decay^step, min)``.
    :param mask_threshold: a step is masked when more than this fraction of its cells is.
    :param store_ids: keep the quantizer ids (``V^(G-1-g)``-weighted sum) as targets of other losses.
    :param reduce_ids: collapse runs of equal ids (CTC / RNN-T targets).
    :param multiplier: the loss is multiplied by ``multiplier / B``.
    """

    needs_labels = False

    def __init__(self, in_dim: int, proj_dim: int = 128, combine_time_steps: int = 1, num_negatives: int = 100,
                 quantized_targets: bool = False, codebook_size: int = 320, prob_ppl_weight: float = 0.1,
                 logit_temp: float = 0.1, reduce: str = "sum", sample_from_same_utterance_only: bool = True,
                 sample_from_non_masked: bool = False, sample_from_codebook: bool = False, group_loss: bool = False,
                 num_groups: int = 2, quantizer_temp_start: float = 2.0, quantizer_temp_min: float = 0.5,
                 quantizer_temp_decay: float = 0.999995, mask_threshold: float = 0.8, store_ids: bool = True,
                 reduce_ids: bool = False, multiplier: float = 16.0) -> None:
        super().__init__()
        if reduce not in ("sum", "mean"):
            raise ValueError(f"ContrastiveLoss: reduce={reduce!r}; choose 'sum' or 'mean'")
        if (sample_from_codebook or group_loss) and not quantized_targets:
            raise ValueError("ContrastiveLoss: sample_from_codebook and group_loss need quantized_targets: true")
        if num_negatives < 1:
            raise ValueError(f"ContrastiveLoss: num_negatives={num_negatives} must be >= 1")
        self.in_dim, self.proj_dim, self.combine_time_steps = in_dim, proj_dim, combine_time_steps
        self.num_negatives, self.quantized_targets = num_negatives, quantized_targets
        self.prob_ppl_weight, self.logit_temp, self.reduce = prob_ppl_weight, logit_temp, reduce
        self.sample_from_same_utterance_only = sample_from_same_utterance_only
        self.sample_from_non_masked = sample_from_non_masked
        self.sample_from_codebook, self.group_loss = sample_from_codebook, group_loss
        self.mask_threshold, self.multiplier = mask_threshold, multiplier
        self.store_ids, self.reduce_ids = store_ids, reduce_ids
        if quantized_targets:
            self.quantizer = GumbelVectorQuantizer(
                dim=in_dim * combine_time_steps, num_vars=codebook_size, groups=num_groups, vq_dim=proj_dim,
                temp=(quantizer_temp_start, quantizer_temp_min, quantizer_temp_decay), combine_groups=True)
        else:
            self.target_proj = nn.Linear(in_dim * combine_time_steps, proj_dim)

    def set_num_updates(self, step: int) -> None:
        """Gumbel temperature for optimizer step ``step``."""
        if self.quantized_targets:
            self.quantizer.set_num_updates(step)

    def forward(self, spectrograms: torch.Tensor, spec_masks: torch.Tensor, decoder_outputs: torch.Tensor,
                decoder_lengths: Optional[torch.Tensor] = None,
                negative_indices: Optional[torch.Tensor] = None,
                generator: Optional[torch.Generator] = None) -> SSLLossOutput:
        """The loss of a batch.

        :param spectrograms: (B, T, F) clean features (the targets' source).
        :param spec_masks: (B, T, F) float 0/1 masked cells.
        :param decoder_outputs: (B, T', P) predictions.
        :param decoder_lengths: (B,) unused (NeMo passes the encoder lengths).
        :param negative_indices: a recorded draw to replay instead of sampling: (Tm, K) in
            same-utterance mode, (M, K) batch-wide.
        :param generator: torch generator for the negatives (None: torch's global one, as NeMo).
        :return: :class:`SSLLossOutput` with ``target_ids`` (if ``store_ids`` and quantized) and
            stats ``accuracy``, ``prob_perplexity``, ``code_perplexity``, ``temperature``, ``num_masked``.
        """
        batch, steps = decoder_outputs.shape[:2]
        grouped = group_steps(spectrograms, steps)  # (B, T', r*F)
        if grouped.shape[-1] != self.in_dim * self.combine_time_steps:
            raise StepCountError(
                f"ContrastiveLoss: {spectrograms.shape[1]} spectrogram frames x {spectrograms.shape[2]} bins over "
                f"{steps} decoder steps give {grouped.shape[-1] // max(spectrograms.shape[2], 1)} frames per step, but "
                f"combine_time_steps={self.combine_time_steps} and in_dim={self.in_dim}; combine_time_steps must equal "
                "the encoder's subsampling and divide the padded length (preprocessor pad_to)")
        out = SSLLossOutput(loss=decoder_outputs.new_zeros(()))
        stages = out.stages
        prob_ppl_loss = None
        if self.quantized_targets:
            quant = self.quantizer(grouped)
            targets = quant.quantized
            prob_ppl_loss = quant.diversity_loss
            ids = quant.target_ids
            stages.update(quantizer_input=grouped, quantizer_logits=quant.logits.flatten(2), quantizer_ids=quant.ids,
                          quantizer_target_ids=ids, quantized_targets=targets, prob_ppl_loss=prob_ppl_loss)
            out.stats.update(prob_perplexity=quant.prob_perplexity.detach(),
                             code_perplexity=quant.code_perplexity.detach(),
                             temperature=torch.tensor(float(quant.temperature)))
            if self.store_ids:
                if self.reduce_ids:
                    out.target_ids, out.target_lengths = reduce_ids(ids)
                else:
                    out.target_ids = ids
        else:
            targets = self.target_proj(grouped)
        step_mask = masked_steps(spec_masks, steps, self.mask_threshold)  # (B, T')
        stages["step_mask"] = step_mask
        if self.sample_from_same_utterance_only:
            predictions, positives, negatives, neg_idx = self._same_utterance(decoder_outputs, targets, step_mask,
                                                                            negative_indices, generator)
        else:
            predictions, positives, negatives, neg_idx = self._batch_wide(decoder_outputs, targets, step_mask,
                                                                        negative_indices, generator)
        logits = contrastive_logits(predictions, positives, negatives, self.logit_temp)
        stages.update(predictions=predictions, positives=positives, negative_indices=neg_idx, logits=logits)
        out.loss = nemo_contrastive_loss(logits, batch, prob_ppl_loss, self.prob_ppl_weight, self.multiplier,
                                         self.reduce)
        with torch.no_grad():
            best = logits.argmax(0) == 0
            out.stats["accuracy"] = best.float().mean() if best.numel() else logits.new_zeros(())
        out.stats["num_masked"] = torch.tensor(float(step_mask.sum()))
        return out

    def _draw(self, num: int, high: int, what: str, given: Optional[torch.Tensor], device, generator) -> torch.Tensor:
        if given is not None:
            return given.to(device)
        if high < self.num_negatives:
            raise ValueError(
                f"ContrastiveLoss: num_negatives={self.num_negatives} is more than the {high} {what} to draw them "
                "from (without replacement); lower model.loss_list.<name>.loss.num_negatives, mask more "
                "(spec_augment.mask_patches) or use longer utterances")
        return sample_negatives_nemo(num, high, self.num_negatives, generator=generator).to(device)

    def _same_utterance(self, decoder_outputs, targets, step_mask, given, generator):
        batch = decoder_outputs.shape[0]
        counts = step_mask.sum(1).tolist()
        if len(set(counts)) > 1:
            raise ValueError(
                f"ContrastiveLoss: sample_from_same_utterance_only needs the same number of masked steps in every "
                f"utterance, got {counts} per batch row; make spec_augment.patch_size a multiple of "
                f"combine_time_steps={self.combine_time_steps}")
        if counts[0] == 0:
            raise ValueError("ContrastiveLoss: no decoder step is masked in this batch (the utterances are too short "
                             "for a whole patch, or mask_patches is 0)")
        channels = decoder_outputs.shape[-1]
        predictions = decoder_outputs[step_mask].reshape(batch, -1, channels).transpose(0, 1)  # (Tm, B, P)
        positives = targets[step_mask].reshape(batch, -1, targets.shape[-1]).transpose(0, 1)
        candidates = targets.transpose(0, 1) if self.sample_from_non_masked else positives  # (N_c, B, P)
        what = "decoder steps per utterance" if self.sample_from_non_masked else "masked steps per utterance"
        idx = self._draw(positives.shape[0], candidates.shape[0], what, given, targets.device, generator)
        negatives = candidates[idx.reshape(-1)].view(idx.shape[0], self.num_negatives, batch, -1).transpose(0, 1)
        return (predictions.reshape(-1, channels), positives.reshape(-1, positives.shape[-1]),
                negatives.reshape(self.num_negatives, -1, negatives.shape[-1]), idx)

    def _batch_wide(self, decoder_outputs, targets, step_mask, given, generator):
        predictions, positives = decoder_outputs[step_mask], targets[step_mask]  # (M, P)
        if predictions.shape[0] == 0:
            raise ValueError("ContrastiveLoss: no decoder step is masked in this batch")
        if self.group_loss:
            codebook = self.quantizer.codebook()  # (G, V, P/G)
            groups = codebook.shape[0]
            predictions = predictions.reshape(-1, predictions.shape[-1] // groups)  # (M*G, P/G)
            positives = positives.reshape(-1, positives.shape[-1] // groups)
            rows = predictions.shape[0]
            negatives = codebook.transpose(0, 1).repeat(1, rows // groups, 1)  # (V, M*G, P/G): row m*G+g -> group g
            return predictions, positives, negatives, None
        if self.sample_from_codebook:
            codebook = self.quantizer.codebook()  # (G, V, P/G)
            groups, num_vars = codebook.shape[:2]
            if self.num_negatives >= num_vars ** groups:
                raise ValueError(f"ContrastiveLoss: num_negatives={self.num_negatives} must be below the "
                                 f"{num_vars ** groups} codebook entries for sample_from_codebook")
            if given is None:
                given = torch.randint(0, num_vars, (self.num_negatives, predictions.shape[0], groups), generator=generator)
            draws = given.to(codebook.device)
            negatives = torch.cat([codebook[g][draws[..., g]] for g in range(groups)], dim=-1)  # (K, M, P)
            return predictions, positives, negatives, draws
        if self.sample_from_non_masked:
            candidates = targets.reshape(-1, targets.shape[-1])
            what = "decoder steps of the batch"
        else:
            candidates, what = positives, "masked steps of the batch"
        idx = self._draw(positives.shape[0], candidates.shape[0], what, given, targets.device, generator)
        negatives = candidates[idx.reshape(-1)].view(idx.shape[0], self.num_negatives, -1).transpose(0, 1)
        return predictions, positives, negatives, idx


class MLMLoss(nn.Module):
    """NeMo's MLMLoss: NLL of the target ids at masked steps (mean over the batch's masked steps).

    :param combine_time_steps: spectrogram frames per decoder step.
    :param mask_threshold: a step is masked when more than this fraction of its cells is.
    """

    needs_labels = True

    def __init__(self, combine_time_steps: int = 1, mask_threshold: float = 0.8) -> None:
        super().__init__()
        self.combine_time_steps, self.mask_threshold = combine_time_steps, mask_threshold

    def forward(self, spec_masks: torch.Tensor, decoder_outputs: torch.Tensor, targets: torch.Tensor,
                decoder_lengths: Optional[torch.Tensor] = None,
                target_lengths: Optional[torch.Tensor] = None) -> SSLLossOutput:
        """:param spec_masks: (B, T, F). :param decoder_outputs: (B, T', C) log-probs.
        :param targets: (B, U <= T') int64. :return: :class:`SSLLossOutput`."""
        step_mask = masked_steps_by_factor(spec_masks, self.combine_time_steps, self.mask_threshold)
        if step_mask.shape[1] != decoder_outputs.shape[1]:
            raise StepCountError(
                f"MLMLoss: combine_time_steps={self.combine_time_steps} makes {step_mask.shape[1]} steps of the "
                f"{spec_masks.shape[1]} spectrogram frames but the decoder gives {decoder_outputs.shape[1]}; set it "
                "to the encoder's subsampling factor")
        loss = mlm_loss(decoder_outputs, targets, step_mask)
        return SSLLossOutput(loss=loss, stats={"num_masked": torch.tensor(float(step_mask.sum()))})


class CTCLossForSSL(nn.Module):
    """CTC over the quantizer's (reduced) ids, NeMo's ``CTCLossForSSL``; blank = ``num_classes``.

    :param num_classes: V^G, the id vocabulary (the head has one more output, the blank).
    :param zero_infinity: zero infeasible utterances (target longer than the frames).
    :param reduction: ``mean_batch`` (mean of per-utterance sums, NeMo's), ``sum``, ``mean``
        (torch's: per-utterance sums over target lengths, then the mean) or ``none``.
    """

    needs_labels = True

    def __init__(self, num_classes: int, zero_infinity: bool = True, reduction: str = "mean_batch") -> None:
        super().__init__()
        if reduction not in ("mean_batch", "sum", "mean", "none"):
            raise ValueError(f"CTCLossForSSL: reduction={reduction!r}; one of mean_batch, sum, mean, none")
        self.blank, self.zero_infinity, self.reduction = num_classes, zero_infinity, reduction

    def forward(self, spec_masks: torch.Tensor, decoder_outputs: torch.Tensor, targets: torch.Tensor,
                decoder_lengths: torch.Tensor, target_lengths: torch.Tensor) -> SSLLossOutput:
        """:param decoder_outputs: (B, T', V^G+1) log-probs. :param targets: (B, U).
        :param decoder_lengths: (B,) encoder lengths. :param target_lengths: (B,)."""
        if self.reduction == "mean_batch" and self.zero_infinity:
            loss = ctc_loss_mean_batch(decoder_outputs, decoder_lengths, targets, target_lengths, self.blank)
        else:
            per_utt = torch.nn.functional.ctc_loss(
                decoder_outputs.transpose(0, 1).float(), targets.long(), decoder_lengths, target_lengths,
                blank=self.blank, reduction="none", zero_infinity=self.zero_infinity)
            if self.reduction == "mean_batch":
                loss = per_utt.mean()
            elif self.reduction == "sum":
                loss = per_utt.sum()
            elif self.reduction == "mean":
                loss = (per_utt / target_lengths.clamp(min=1)).mean()
            else:
                loss = per_utt
        return SSLLossOutput(loss=loss)


@dataclass
class TransducerHeadOutput:
    """What :class:`RNNTDecoderJointSSL` hands its loss: encoder frames, prediction-network
    output, and the joint that combines them (the pruned loss evaluates it on a band only)."""

    encoded: torch.Tensor  # (B, T', D)
    predictions: torch.Tensor  # (B, U+1, H)
    targets: torch.Tensor  # (B, U) int64, zero past each length
    joint: RNNTJoint


class RNNTDecoderJointSSL(nn.Module):
    """NeMo's ``RNNTDecoderJointSSL``: prediction network + joint over the quantizer ids.

    State-dict keys are NeMo's: ``decoder.*`` (prediction network) and ``joint.*``.
    """

    needs_labels = True

    def __init__(self, decoder: RNNTPredictionNetwork, joint: RNNTJoint) -> None:
        super().__init__()
        self.decoder, self.joint = decoder, joint

    def forward(self, encoder_out: torch.Tensor, targets: torch.Tensor,
                target_lengths: torch.Tensor) -> TransducerHeadOutput:
        """:param encoder_out: (B, T', D). :param targets: (B, U). :param target_lengths: (B,)."""
        max_u = int(target_lengths.max()) if targets.numel() else 0
        targets = targets[:, :max_u].long()
        targets = torch.where(torch.arange(max_u, device=targets.device) < target_lengths[:, None], targets,
                              torch.zeros_like(targets))
        predictions, _ = self.decoder(targets, target_lengths)
        return TransducerHeadOutput(encoder_out, predictions, targets, self.joint)


class RNNTLossForSSL(nn.Module):
    """RNN-T loss over the quantizer's ids on myna's losses (full, or k2's pruned); blank = ``num_classes``.

    :param num_classes: V^G.
    :param loss_name: ``full`` (NeMo's) or ``pruned`` (k2/icefall's simple + pruned losses).
    :param s_range, simple_loss_scale, lm_only_scale, am_only_scale: the pruned loss' settings.
    :param encoder_dim, pred_dim: sizes for the pruned loss' simple projections (its own
        parameters, ``simple_am_proj`` / ``simple_lm_proj``); needed with ``pruned`` only.
    """

    needs_labels = True

    def __init__(self, num_classes: int, loss_name: str = "full", s_range: int = 5, simple_loss_scale: float = 0.5,
                 lm_only_scale: float = 0.25, am_only_scale: float = 0.0, encoder_dim: Optional[int] = None,
                 pred_dim: Optional[int] = None) -> None:
        super().__init__()
        if loss_name not in ("full", "pruned"):
            raise ValueError(f"RNNTLossForSSL: loss_name={loss_name!r}; choose 'full' or 'pruned'")
        self.blank, self.loss_name = num_classes, loss_name
        self.s_range, self.simple_loss_scale = s_range, simple_loss_scale
        self.lm_only_scale, self.am_only_scale = lm_only_scale, am_only_scale
        if loss_name == "pruned":
            if not encoder_dim or not pred_dim:
                raise ValueError("RNNTLossForSSL: loss_name=pruned needs encoder_dim and pred_dim")
            self.simple_am_proj = nn.Linear(encoder_dim, num_classes + 1)
            self.simple_lm_proj = nn.Linear(pred_dim, num_classes + 1)

    def forward(self, spec_masks: torch.Tensor, decoder_outputs: TransducerHeadOutput, targets: torch.Tensor,
                decoder_lengths: torch.Tensor, target_lengths: torch.Tensor) -> SSLLossOutput:
        """:param decoder_outputs: from :class:`RNNTDecoderJointSSL`. :return: mean over utterances."""
        head = decoder_outputs
        if self.loss_name == "full":
            logits = head.joint(head.encoded, head.predictions)  # (B, T', U+1, V+1)
            loss = rnnt_losses.transducer_loss(logits, head.targets, decoder_lengths, target_lengths,
                                               blank=self.blank, reduction="mean")
            return SSLLossOutput(loss=loss)
        simple, pruned = rnnt_losses.pruned_transducer_loss(
            self.simple_am_proj(head.encoded), self.simple_lm_proj(head.predictions), head.joint.joint_after_projection,
            head.targets, decoder_lengths, target_lengths, blank=self.blank, s_range=self.s_range,
            lm_only_scale=self.lm_only_scale, am_only_scale=self.am_only_scale, reduction="mean",
            joiner_am=head.joint.project_encoder(head.encoded), joiner_lm=head.joint.project_prediction(head.predictions))
        return SSLLossOutput(loss=self.simple_loss_scale * simple + pruned,
                             stats={"simple_loss": simple.detach(), "pruned_loss": pruned.detach()})
