"""wav2vec 2.0 pre-training: masked frames, quantized targets, contrastive + diversity losses.

:class:`Wav2Vec2PreTrainingModel` composes a waveform front end, a
:class:`~myna.nn.wav2vec2.Wav2Vec2Encoder` (plain or Hourglass), a
:class:`~myna.nn.quantizer.GumbelVectorQuantizer` and the two projections into the contrastive
space (``project_hid`` for context vectors, HF's name for fairseq's ``final_proj``;
``project_q`` for quantized targets). One training step:

1. span masks over frames (fairseq's ``require_same_masks`` algorithm by default, or HF's);
2. the encoder runs with masked frames replaced by the learned mask embedding;
3. the quantizer maps the (unmasked) normalised conv features to codevectors;
4. each masked frame's context vector is scored against its quantized target and K distractors
   drawn from the other masked frames of its utterance;
5. loss = (contrastive + 0.1 * diversity * S + 10 * feature penalty * S) / S over S masked frames.

The fine-tuned encoder moves into myna's CTC and Transducer models unchanged (its weights are
``encoder.*`` in both): ``init_from_pretrained_model`` with ``include: [encoder]``. Recipes build
it through :func:`myna.interop.adapter.build_model` (``target: myna.Wav2Vec2PreTrainingModel``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from myna.losses.contrastive import Wav2Vec2Loss, contrastive_logits, wav2vec2_loss
from myna.losses.negatives import gather_negatives, sample_negatives_wav2vec2
from myna.nn.masking import compute_mask_indices_fairseq, compute_mask_indices_hf, min_frames_for_masking
from myna.nn.quantizer import GumbelVectorQuantizer, QuantizerOutput
from myna.nn.wav2vec2 import Wav2Vec2Encoder, Wav2Vec2Output

__all__ = ["MaskingConfig", "ContrastiveConfig", "Wav2Vec2PreTrainingModel", "PretrainingOutput", "TooShortError"]


class TooShortError(ValueError):
    """A batch row is too short for the mask spans or the negatives; ``rows`` lists them."""

    def __init__(self, message: str, rows: list[int], min_samples: int):
        super().__init__(message)
        self.rows = rows
        self.min_samples = min_samples


@dataclass
class MaskingConfig:
    """Span masking of pre-training.

    ``style``: ``"fairseq"`` (fairseq / DLE: a fresh rounding draw per row and, with
    ``require_same_masks``, equal masked counts in every row) or ``"hf"`` (HF's
    ``_compute_mask_indices``: one draw per batch, rows may differ).
    ``mask_prob`` 0.65 and ``mask_length`` 10 are the paper's; ``min_masks`` 2.
    """

    mask_prob: float = 0.65
    mask_length: int = 10
    min_masks: int = 2
    style: str = "fairseq"
    require_same_masks: bool = True

    def __post_init__(self):
        if self.style not in ("fairseq", "hf"):
            raise ValueError(f"masking style={self.style!r}: choose 'fairseq' or 'hf'")
        if not 0 < self.mask_prob <= 1:
            raise ValueError(f"mask_prob={self.mask_prob} must be in (0, 1]")
        if self.mask_length < 1:
            raise ValueError(f"mask_length={self.mask_length} must be >= 1")


@dataclass
class ContrastiveConfig:
    """The contrastive objective: K negatives, temperature kappa, the extra terms' weights.

    ``diversity_weight`` 0.1 and ``feature_penalty_weight`` 10 are fairseq's ``loss_weights``
    (HF uses 0.1 and no penalty). ``eval_perplexity``: the perplexity behind the diversity term
    in evaluation, ``"prob"`` (fairseq: the softmax's) or ``"code"`` (HF: the one-hot argmax's).
    """

    num_negatives: int = 100
    logit_temp: float = 0.1
    diversity_weight: float = 0.1
    feature_penalty_weight: float = 10.0
    eval_perplexity: str = "prob"

    def __post_init__(self):
        if self.num_negatives < 1:
            raise ValueError(f"num_negatives={self.num_negatives} must be >= 1")
        if self.eval_perplexity not in ("prob", "code"):
            raise ValueError(f"eval_perplexity={self.eval_perplexity!r}: choose 'prob' or 'code'")


@dataclass
class PretrainingOutput:
    """Everything one pre-training pass computed (for logging, parity tests and analysis)."""

    losses: Wav2Vec2Loss
    encoder: Wav2Vec2Output
    quantizer: QuantizerOutput
    projected_states: torch.Tensor  # (B, T, F) project_hid(hidden)
    projected_quantized: torch.Tensor  # (B, T, F) project_q(quantized)
    logits: torch.Tensor  # (1+K, S) contrastive logits of the masked frames, row-major order
    mask_time_indices: torch.Tensor  # (B, T) bool
    negative_indices: torch.Tensor  # (B, T, K) int64 into the flattened B*T frames
    perplexity: torch.Tensor  # the one behind the diversity term


class Wav2Vec2PreTrainingModel(nn.Module):
    """wav2vec 2.0 pre-training (fairseq / NVIDIA DLE recipe; HF ``Wav2Vec2ForPreTraining``).

    :param preprocessor: waveform front end, ``(B, L), (B,) -> (B, L, 1), (B,)``
        (:class:`myna.features.WaveformFeaturizer`).
    :param encoder: the network to pre-train.
    :param quantizer: targets from the encoder's normalised conv features; None for an encoder
        without a pre-training head (an HF ``Wav2Vec2Model`` folder), which cannot compute losses.
    :param final_dim: contrastive space size (fairseq ``final_dim``, HF ``proj_codevector_dim``).
    :param masking: :class:`MaskingConfig`. :param contrastive: :class:`ContrastiveConfig`.
    :param dropout_features: dropout on the quantizer input (fairseq ``dropout_features`` 0.1;
        HF ``feat_quantizer_dropout``).
    """

    def __init__(self, preprocessor: nn.Module, encoder: Wav2Vec2Encoder,
                 quantizer: Optional[GumbelVectorQuantizer], final_dim: int = 256,
                 masking: Optional[MaskingConfig] = None, contrastive: Optional[ContrastiveConfig] = None,
                 dropout_features: float = 0.1):
        super().__init__()
        self.preprocessor = preprocessor
        self.encoder = encoder
        self.quantizer = quantizer
        self.masking = masking or MaskingConfig()
        self.contrastive = contrastive or ContrastiveConfig()
        self.dropout_features = nn.Dropout(dropout_features)
        if quantizer is not None:
            self.project_hid = nn.Linear(encoder.hidden_size, final_dim)
            self.project_q = nn.Linear(quantizer.vq_dim, final_dim)
        self.tokenizer = None

    # ---- sizes and checks -------------------------------------------------------------------
    @property
    def min_frames(self) -> int:
        """Fewest frames an utterance needs: ``min_masks`` spans of ``mask_length`` and two masked frames."""
        return min_frames_for_masking(self.masking.mask_length, self.masking.min_masks)

    @property
    def min_samples(self) -> int:
        """Fewest samples an utterance needs (see :attr:`min_frames`)."""
        return self.encoder.feature_extractor.min_samples(self.min_frames)

    def min_duration(self, sample_rate: Optional[int] = None) -> float:
        """Shortest usable utterance in seconds."""
        rate = sample_rate or getattr(self.preprocessor, "sample_rate", 16000)
        return self.min_samples / rate

    def check_lengths(self, audio_lengths: torch.Tensor) -> None:
        """Raise :class:`TooShortError` naming the rows shorter than :attr:`min_samples`."""
        short = (audio_lengths < self.min_samples).nonzero().flatten().tolist()
        if short:
            rate = getattr(self.preprocessor, "sample_rate", 16000)
            details = ", ".join(f"row {i}: {int(audio_lengths[i])} samples ({int(audio_lengths[i]) / rate:.4f} s)"
                                for i in short)
            raise TooShortError(
                f"audio too short for wav2vec 2.0 pre-training ({details}); the shortest usable duration is "
                f"{self.min_duration():.4f} s ({self.min_samples} samples, {self.min_frames} frames: "
                f"{self.masking.min_masks} mask spans of {self.masking.mask_length} frames and at least 2 masked "
                f"frames for negatives)", short, self.min_samples)

    # ---- randomness -------------------------------------------------------------------------
    @staticmethod
    def step_rng(step: Optional[int]) -> np.random.RandomState:
        """Numpy generator for the masks and negatives of a step: a function of the run's seed
        (torch's initial seed), the step and the DDP rank, so a resumed run draws the same."""
        if step is None:
            return np.random.RandomState(int(torch.randint(0, 2**31 - 1, ())))
        rank = int(os.environ.get("RANK", 0))
        return np.random.RandomState((torch.initial_seed() * 1_000_003 + step * 7919 + rank) % (2**32))

    def compute_masks(self, frame_lengths: torch.Tensor, frames: int, rng: np.random.RandomState) -> torch.Tensor:
        """(B,) valid frames -> (B, T) bool span mask by the configured algorithm."""
        cfg = self.masking
        batch = frame_lengths.shape[0]
        lengths = frame_lengths.tolist()
        padded = any(n < frames for n in lengths)
        if cfg.style == "hf":
            mask = compute_mask_indices_hf((batch, frames), cfg.mask_prob, cfg.mask_length,
                                           lengths if padded else None, cfg.min_masks, rng=rng)
        else:
            padding = [frames - n for n in lengths] if padded else None
            mask = compute_mask_indices_fairseq((batch, frames), padding, cfg.mask_prob, cfg.mask_length,
                                                cfg.min_masks, cfg.require_same_masks, rng=rng)
        return torch.from_numpy(mask).to(frame_lengths.device)

    # ---- passes -----------------------------------------------------------------------------
    def featurize(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L), (B,) -> (B, L, 1) front-end output, (B,)."""
        return self.preprocessor(audio, audio_lengths)

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor, tokens: Optional[torch.Tensor] = None,
                token_lengths: Optional[torch.Tensor] = None, step: Optional[int] = None,
                **unused) -> dict[str, torch.Tensor]:
        """One pre-training pass with freshly drawn masks and negatives.

        :param audio: (B, L) float waveform. :param audio_lengths: (B,) int64 samples.
        :param tokens, token_lengths: ignored (pre-training needs no labels).
        :param step: optimizer step: sets the Gumbel temperature (in training) and seeds the draws.
        :return: dict of scalars: ``loss`` (per masked frame, optimised), ``contrastive_loss``
            and ``diversity_loss`` and ``feature_penalty`` (per masked frame), ``accuracy``,
            ``prob_perplexity``, ``code_perplexity``, ``temperature``, ``num_masked``.
        :raises TooShortError: a row is shorter than :attr:`min_samples`.
        """
        if self.quantizer is None:
            raise ValueError("this wav2vec 2.0 model has no quantizer (an encoder-only checkpoint); "
                             "it cannot be pre-trained further")
        if self.training and step is not None:
            self.quantizer.set_num_updates(step)
        self.check_lengths(audio_lengths)
        features, lengths = self.featurize(audio, audio_lengths)
        rng = self.step_rng(step)
        frame_lengths = self.encoder.output_lengths(lengths)
        frames = int(self.encoder.output_lengths(torch.tensor([features.shape[1]]))[0])
        mask = self.compute_masks(frame_lengths.clamp(max=frames), frames, rng)
        negatives = sample_negatives_wav2vec2(mask, self.contrastive.num_negatives, rng=rng).to(mask.device)
        out = self.forward_with_masks(features, lengths, mask, negatives)
        losses = out.losses
        return {"loss": losses.loss, "contrastive_loss": losses.contrastive.detach() / losses.num_masked,
                "diversity_loss": losses.diversity.detach(), "feature_penalty": losses.feature_penalty.detach(),
                "accuracy": losses.accuracy, "prob_perplexity": out.quantizer.prob_perplexity.detach(),
                "code_perplexity": out.quantizer.code_perplexity.detach(),
                "temperature": torch.tensor(out.quantizer.temperature),
                "num_masked": torch.tensor(float(losses.num_masked))}

    def forward_with_masks(self, features: torch.Tensor, lengths: torch.Tensor, mask_time_indices: torch.Tensor,
                           negative_indices: torch.Tensor, return_stages: bool = False) -> PretrainingOutput:
        """The pre-training pass for given masks and negatives (replays recorded draws exactly).

        :param features: (B, L, 1) or (B, L) front-end output. :param lengths: (B,) samples.
        :param mask_time_indices: (B, T) bool masked frames.
        :param negative_indices: (B, T, K) int64 distractor indices into the flattened B*T frames
            (HF's ``sampled_negative_indices`` layout; rows of unmasked frames are ignored).
        :param return_stages: keep the encoder's intermediate tensors.
        """
        enc = self.encoder.extract(features, lengths, mask_time_indices=mask_time_indices,
                                   apply_training_masks=False, return_stages=return_stages)
        quant = self.quantizer(self.dropout_features(enc.extract_features), mask=mask_time_indices)
        targets = self.project_q(quant.quantized)  # (B, T, F)
        predictions = self.project_hid(enc.hidden)  # (B, T, F)
        negatives = gather_negatives(targets, negative_indices)[:, mask_time_indices]  # (K, S, F)
        logits = contrastive_logits(predictions[mask_time_indices], targets[mask_time_indices], negatives,
                                    self.contrastive.logit_temp)
        use_code = not self.training and self.contrastive.eval_perplexity == "code"
        ppl = quant.code_perplexity if use_code else quant.prob_perplexity
        cfg = self.contrastive
        losses = wav2vec2_loss(logits, ppl, quant.num_codevectors,
                               enc.conv_features if cfg.feature_penalty_weight else None,
                               cfg.diversity_weight, cfg.feature_penalty_weight)
        return PretrainingOutput(losses, enc, quant, predictions, targets, logits, mask_time_indices,
                                 negative_indices, ppl)

    def transcribe(self, *args, **kwargs):
        raise ValueError("a wav2vec 2.0 pre-training model has no output vocabulary; fine-tune it into a CTC or "
                         "Transducer model (init_from_pretrained_model=...) to transcribe")
