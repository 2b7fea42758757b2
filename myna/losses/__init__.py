"""Losses: RNN-T (full and pruned, k2-compatible API)."""

from .rnnt import (
    NonFiniteError,
    do_rnnt_pruning,
    get_rnnt_prune_ranges,
    pruned_transducer_loss,
    rnnt_loss,
    rnnt_loss_pruned,
    rnnt_loss_simple,
    rnnt_loss_smoothed,
    transducer_loss,
)

__all__ = [
    "NonFiniteError",
    "rnnt_loss",
    "rnnt_loss_simple",
    "rnnt_loss_smoothed",
    "get_rnnt_prune_ranges",
    "do_rnnt_pruning",
    "rnnt_loss_pruned",
    "transducer_loss",
    "pruned_transducer_loss",
]
