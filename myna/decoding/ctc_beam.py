"""CTC prefix beam search with optional n-gram shallow fusion.

Each prefix (label sequence) carries two probabilities at frame t: ``p_b``, of the alignments
of the prefix that end in blank, and ``p_nb``, of those that end in its last label. A frame
extends a prefix by blank (into ``p_b``), by its last label again (merged: stays the same
prefix, into ``p_nb``) or by a new label c (``prefix + c``; when c equals the last label only
the ``p_b`` paths may extend, the others would merge). Prefixes are ranked by
``log(p_b + p_nb) + lm_weight * lm_score`` and the ``beam_size`` best survive each frame.
With a beam that keeps every prefix, ``am_score`` is exactly the CTC log-probability of the
labels (the quantity ``torch.nn.functional.ctc_loss`` negates).

>>> nbest = ctc_prefix_beam_search(log_probs, lengths, blank_id=128, beam_size=8)
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from myna.decoding.beam import BeamHypothesis, _finish, _Hyp, _log_add

__all__ = ["ctc_prefix_beam_search"]


class _Prefix:
    __slots__ = ("p_b", "p_nb", "lm", "lm_state", "times", "confs")

    def __init__(self, lm, lm_state, times, confs):
        self.p_b = self.p_nb = -math.inf
        self.lm, self.lm_state, self.times, self.confs = lm, lm_state, times, confs

    @property
    def total(self) -> float:
        return _log_add(self.p_b, self.p_nb)


@torch.inference_mode()
def ctc_prefix_beam_search(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    blank_id: int,
    beam_size: int = 4,
    lm: Optional[Any] = None,
    lm_weight: float = 0.0,
    token_beam: Optional[int] = None,
    score_norm: bool = False,
    nbest: Optional[int] = None,
) -> list[list[BeamHypothesis]]:
    """Prefix beam search over CTC log-probabilities, one utterance at a time.

    Args:
        log_probs: (B, T, V+1) float per-frame log-probabilities (log-softmax output).
        lengths: (B,) int64 valid frames.
        blank_id: blank class (the last one when an LM is used).
        beam_size: prefixes kept per frame.
        lm: a scorer from :mod:`myna.decoding.lm`, or None; lm_weight: its fusion weight.
        token_beam: labels tried per frame: the ``token_beam`` most probable ones (None: all,
            exact but costs beam x V Python steps per frame; 2-3 x beam_size is a good speed-up).
        score_norm: rank by ``score / (len(tokens) + 1)`` (off by default: CTC scores do not
            accumulate per label the way Transducer scores do).
        nbest: length of each returned list (default ``beam_size``).

    Returns:
        For each utterance, up to ``nbest`` :class:`BeamHypothesis`, best first; ``timestamps``
        is the frame where each label first appeared in the surviving prefix.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    num_classes = log_probs.shape[-1]
    if lm is not None and blank_id != num_classes - 1:
        raise ValueError(f"LM fusion needs blank as the last class ({num_classes - 1}), got blank_id={blank_id}")
    if lm is None and lm_weight != 0.0:
        raise ValueError(f"lm_weight={lm_weight} given without an LM")
    results = []
    for b in range(log_probs.shape[0]):
        frames = log_probs[b, : int(lengths[b])].float()
        results.append(_search_one(frames, blank_id, beam_size, lm, lm_weight, token_beam, score_norm,
                                   nbest or beam_size))
    return results


def _search_one(frames: torch.Tensor, blank_id: int, beam_size: int, lm, lm_weight: float,
                token_beam: Optional[int], score_norm: bool, nbest: int) -> list[BeamHypothesis]:
    """Prefix beam search over (T, V+1) log-probs of one utterance."""
    root = _Prefix(0.0, lm.start() if lm is not None else None, (), ())
    root.p_b = 0.0
    beam: dict[tuple[int, ...], _Prefix] = {(): root}
    num_classes = frames.shape[-1]
    if token_beam is None or token_beam >= num_classes:
        candidates_all = [c for c in range(num_classes) if c != blank_id]
    for t in range(frames.shape[0]):
        lp = frames[t].tolist()
        if token_beam is None or token_beam >= num_classes:
            candidates = candidates_all
        else:
            candidates = [c for c in frames[t].topk(token_beam).indices.tolist() if c != blank_id]
        nxt: dict[tuple[int, ...], _Prefix] = {}

        def entry(prefix, parent, c):
            node = nxt.get(prefix)
            if node is None:
                old = beam.get(prefix)
                if old is not None:
                    node = _Prefix(old.lm, old.lm_state, old.times, old.confs)
                elif lm is not None:
                    delta = float(lm.token_scores(parent.lm_state)[c])
                    node = _Prefix(parent.lm + delta, lm.advance(parent.lm_state, c), parent.times + (t,),
                                   parent.confs + (math.exp(lp[c]),))
                else:
                    node = _Prefix(0.0, None, parent.times + (t,), parent.confs + (math.exp(lp[c]),))
                nxt[prefix] = node
            return node

        for prefix, node in beam.items():
            total = node.total
            same = entry(prefix, node, None)
            same.p_b = _log_add(same.p_b, total + lp[blank_id])
            last = prefix[-1] if prefix else None
            if last is not None:
                same.p_nb = _log_add(same.p_nb, node.p_nb + lp[last])
            for c in candidates:
                child = entry(prefix + (c,), node, c)
                child.p_nb = _log_add(child.p_nb, (node.p_b if c == last else total) + lp[c])
        ranked = sorted(nxt.items(), key=lambda kv: kv[1].total + lm_weight * kv[1].lm, reverse=True)
        beam = {k: v for k, v in ranked[:beam_size] if v.total > -math.inf}
    hyps = [_Hyp(prefix, node.total, node.lm, node.lm_state, node.times, node.confs) for prefix, node in beam.items()]
    return _finish(hyps, lm, lm_weight, score_norm, nbest)
