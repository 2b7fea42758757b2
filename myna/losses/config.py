"""The training-loss options of the Transducer models and their defaults, in one place.

``model.loss`` of a recipe holds these keys (``myna.config`` takes its defaults from here), and
the NeMo-config adapter builds a :class:`TransducerLossConfig` from that section.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TransducerLossConfig", "AUX_CTC_LOSS_WEIGHT"]

# NeMo's default ``aux_ctc.ctc_loss_weight`` of hybrid RNN-T + CTC models.
AUX_CTC_LOSS_WEIGHT = 0.3


@dataclass
class TransducerLossConfig:
    """``model.loss``: the full RNN-T loss, or the pruned loss (k2 / icefall recipe).

    ``s_range``: symbols kept per frame by the pruned loss. ``lm_only_scale`` /
    ``am_only_scale``: smoothing of the simple (trivial-joiner) loss.
    ``simple_loss_scale``: weight of the simple loss after warm-up; during the first
    ``warm_step`` steps it decays from 1 and the pruned loss' weight grows from 0.1 to 1.
    ``ctc_weight``: weight of the auxiliary CTC loss for hybrid models (NeMo's
    ``aux_ctc.ctc_loss_weight``, :data:`AUX_CTC_LOSS_WEIGHT` unless set).
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
