"""Building blocks: plain nn.Modules whose parameter names follow NeMo's state dicts."""

from .conformer import ConformerEncoder
from .contextnet import ContextNetEncoder
from .ctc_head import CTCHead
from .joint import RNNTJoint
from .prediction import RNNTPredictionNetwork

__all__ = ["ConformerEncoder", "ContextNetEncoder", "CTCHead", "RNNTJoint", "RNNTPredictionNetwork"]
