"""Losses: RNN-T (full and pruned) with k2's whole RNN-T API (see ``rnnt.py``)."""

from .mutual_information import joint_mutual_information_recursion, mutual_information_recursion
from .pruning import do_rnnt_pruning, get_rnnt_prune_ranges, get_rnnt_prune_ranges_deprecated
from .rnnt import (
    NonFiniteError,
    fix_for_boundary,
    get_hat_logprobs_pruned,
    get_rnnt_logprobs,
    get_rnnt_logprobs_joint,
    get_rnnt_logprobs_pruned,
    get_rnnt_logprobs_smoothed,
    pruned_transducer_loss,
    rnnt_loss,
    rnnt_loss_pruned,
    rnnt_loss_simple,
    rnnt_loss_smoothed,
    transducer_loss,
)

__all__ = [
    # k2 / fast_rnnt API (k2/python/k2/rnnt_loss.py and mutual_information.py)
    "rnnt_loss",
    "rnnt_loss_simple",
    "rnnt_loss_smoothed",
    "rnnt_loss_pruned",
    "get_rnnt_logprobs",
    "get_rnnt_logprobs_smoothed",
    "get_rnnt_logprobs_joint",
    "get_rnnt_logprobs_pruned",
    "get_hat_logprobs_pruned",
    "fix_for_boundary",
    "get_rnnt_prune_ranges",
    "get_rnnt_prune_ranges_deprecated",
    "do_rnnt_pruning",
    "mutual_information_recursion",
    "joint_mutual_information_recursion",
    # myna conveniences (lengths instead of boundaries) and the error for NaN/inf inputs
    "transducer_loss",
    "pruned_transducer_loss",
    "NonFiniteError",
]
