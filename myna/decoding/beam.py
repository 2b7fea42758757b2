"""Beam search for Transducers: modified beam search (batched) and ALSD, with n-gram shallow fusion.

- :func:`modified_beam_search` (icefall's ``modified_beam_search``): every frame each
  hypothesis either emits blank or exactly one label and the search moves to the next frame, so
  all utterances of the batch advance in lock-step, one joiner call and one prediction-network
  call per frame for the whole batch. Hypotheses with the same labels are merged (their
  probabilities added), so a score is the log-probability summed over the kept alignments.
- :func:`beam_search` is NeMo's ``alsd`` (alignment-length synchronous decoding, Saon et al.
  2020): step ``i`` holds hypotheses with ``t + u = i``; each expands by blank (next frame) or
  by one of the ``beam_size`` best labels (same frame), so several labels per frame are
  possible. Hypotheses with equal labels sit on the same frame at the same step and are merged
  exactly; with a beam wide enough to keep everything the scores are the exact RNN-T
  log-probabilities of each label sequence. It runs one utterance at a time (the hypotheses of
  that utterance are batched through the joiner and prediction network).

Scores. ``Hypothesis.score`` is the fused score ``am_score + lm_weight * lm_score``, where
``am_score`` is the log-probability of the hypothesis under the Transducer (blanks included)
and ``lm_score`` the n-gram ln-probability including the end of sentence. With
``score_norm=True`` the n-best list is ranked by ``score / (len(tokens) + 1)``, NeMo's
length normalisation (NeMo divides by the length of its ``y_sequence``, which starts with a
blank), otherwise by ``score``; the stored scores are never normalised.

Prediction-network states are tuples of tensors with the hypothesis (batch) axis in dim 1,
like an LSTM's ``(h, c)`` of shape (layers, N, H).

>>> nbest = modified_beam_search(enc, enc_len, model.decoder, model.joint, model.blank_id, beam_size=4)
>>> best = [hyps[0] for hyps in nbest]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch

from myna.decoding.greedy import Hypothesis

__all__ = ["BeamHypothesis", "modified_beam_search", "beam_search"]


@dataclass
class BeamHypothesis(Hypothesis):
    """A beam-search result: ``score = am_score + lm_weight * lm_score`` (natural logs)."""

    am_score: float = 0.0
    lm_score: float = 0.0


class _Hyp:
    """Search-time hypothesis; ``row`` indexes the projected prediction output / state store."""

    __slots__ = ("tokens", "am", "lm", "lm_state", "times", "confs", "row", "parent_row")

    def __init__(self, tokens, am, lm, lm_state, times, confs, row=None, parent_row=None):
        self.tokens, self.am, self.lm, self.lm_state = tokens, am, lm, lm_state
        self.times, self.confs, self.row, self.parent_row = times, confs, row, parent_row

    def fused(self, lm_weight: float) -> float:
        return self.am + lm_weight * self.lm


def _index_state(state: tuple[torch.Tensor, ...], index: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Rows ``index`` (N,) int64 of every state tensor (batch axis = dim 1)."""
    return tuple(s.index_select(1, index) for s in state)


def _cat_state(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.cat([x, y], dim=1) for x, y in zip(a, b))


def _merge(pool: dict[tuple[int, ...], _Hyp], hyp: _Hyp) -> None:
    """Add ``hyp`` to ``pool``; equal label sequences are merged by adding probabilities."""
    old = pool.get(hyp.tokens)
    if old is None:
        pool[hyp.tokens] = hyp
        return
    if hyp.am > old.am:  # keep the alignment details (times, confidences, state) of the better path
        hyp.am = _log_add(hyp.am, old.am)
        pool[hyp.tokens] = hyp
    else:
        old.am = _log_add(old.am, hyp.am)


def _log_add(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def _check_lm(lm, lm_weight: float, num_classes: int, blank_id: int) -> None:
    if lm is not None and blank_id != num_classes - 1:
        raise ValueError(f"LM fusion needs blank as the last class ({num_classes - 1}), got blank_id={blank_id}")
    if lm is None and lm_weight != 0.0:
        raise ValueError(f"lm_weight={lm_weight} given without an LM")


def _finish(hyps: list[_Hyp], lm, lm_weight: float, score_norm: bool, nbest: int) -> list[BeamHypothesis]:
    """Close hypotheses (LM end of sentence), rank them, convert to :class:`BeamHypothesis`."""
    done = []
    for h in hyps:
        lm_score = h.lm + (lm.final_score(h.lm_state) if lm is not None else 0.0)
        score = h.am + lm_weight * lm_score
        done.append(BeamHypothesis(tokens=list(h.tokens), timestamps=list(h.times), confidences=list(h.confs),
                                   score=score, am_score=h.am, lm_score=lm_score))
    key = (lambda x: x.score / (len(x.tokens) + 1)) if score_norm else (lambda x: x.score)
    done.sort(key=key, reverse=True)
    return done[:nbest]


def _start(prediction_net, joint, device, dtype) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Projected prediction output (1, J) and state after the start symbol."""
    state = prediction_net.initial_state(1, device, dtype)
    out, state = prediction_net.step(None, state)  # (1, H)
    return joint.project_prediction(out.unsqueeze(1)).squeeze(1), tuple(state)


@torch.inference_mode()
def modified_beam_search(
    encoder_out: torch.Tensor,
    encoder_lengths: torch.Tensor,
    prediction_net: torch.nn.Module,
    joint: torch.nn.Module,
    blank_id: int,
    beam_size: int = 4,
    lm: Optional[Any] = None,
    lm_weight: float = 0.0,
    score_norm: bool = True,
    nbest: Optional[int] = None,
) -> list[list[BeamHypothesis]]:
    """Batched beam search with at most one label per frame (icefall's modified beam search).

    Each frame, every hypothesis of every active utterance is scored by one joiner call
    ((N, J) -> (N, V+1) log-softmax, N = hypotheses in the batch); per utterance the
    ``beam_size`` best (hypothesis, class) pairs by fused score survive; blank keeps the
    hypothesis's labels, a label appends to them. Survivors with equal labels are merged. The
    prediction network then runs once on all survivors that appended a label.

    Args:
        encoder_out: (B, T, D) float encoder output.
        encoder_lengths: (B,) int64 valid frames.
        prediction_net: ``initial_state(n, device, dtype)``, ``step(tokens (N,) | None, state)
            -> (out (N, H), state)``; state tensors have the batch axis in dim 1.
        joint: ``project_encoder`` (B, T, D) -> (B, T, J), ``project_prediction`` (N, 1, H) ->
            (N, 1, J), ``joint_after_projection`` (N, J) + (N, J) -> (N, V+1) raw logits.
        blank_id: blank class (the last one when an LM is used).
        beam_size: hypotheses kept per utterance: larger is slower and searches wider.
        lm: a scorer from :mod:`myna.decoding.lm` (``start``, ``advance``, ``token_scores``,
            ``final_score``) or None.
        lm_weight: shallow-fusion weight of the LM's ln-probabilities.
        score_norm: rank the final n-best by ``score / (len(tokens) + 1)`` (NeMo's default).
        nbest: length of each returned list (default ``beam_size``).

    Returns:
        For each utterance, up to ``nbest`` :class:`BeamHypothesis`, best first; ``timestamps``
        are frame indices, ``confidences`` the softmax probability of each label where emitted.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    batch, max_t, _ = encoder_out.shape
    device = encoder_out.device
    lengths = encoder_lengths.tolist()
    f = joint.project_encoder(encoder_out)  # (B, T, J)
    g_store, state_store = _start(prediction_net, joint, device, f.dtype)  # (1, J), state with N=1
    lm_start = lm.start() if lm is not None else None
    beams: list[list[_Hyp]] = [[_Hyp((), 0.0, 0.0, lm_start, (), (), row=0)] for _ in range(batch)]
    num_classes = None

    for t in range(max_t):
        active = [b for b in range(batch) if t < lengths[b]]
        if not active:
            break
        hyps = [h for b in active for h in beams[b]]
        rows = torch.tensor([h.row for h in hyps], device=device)
        owner = torch.tensor([b for b in active for _ in beams[b]], device=device)
        logits = joint.joint_after_projection(f[owner, t], g_store.index_select(0, rows))  # (N, V+1)
        log_probs = logits.float().log_softmax(-1)
        num_classes = log_probs.shape[-1]
        if t == 0:
            _check_lm(lm, lm_weight, num_classes, blank_id)
        fused = log_probs + torch.tensor([h.fused(lm_weight) for h in hyps], device=device).unsqueeze(1)
        lm_delta = None
        if lm is not None:
            lm_delta = torch.stack([lm.token_scores(h.lm_state) for h in hyps]).to(device)  # (N, V)
            fused[:, :-1] += lm_weight * lm_delta
        # Pad to (A, K, V+1) so one topk serves all utterances.
        counts = [len(beams[b]) for b in active]
        k_max = max(counts)
        slot = torch.tensor([k for c in counts for k in range(c)], device=device)
        utt = torch.tensor([a for a, c in enumerate(counts) for _ in range(c)], device=device)
        padded = fused.new_full((len(active), k_max, num_classes), -math.inf)
        padded[utt, slot] = fused
        row_of = torch.zeros(len(active), k_max, dtype=torch.long, device=device)
        row_of[utt, slot] = torch.arange(len(hyps), device=device)
        k = min(beam_size, k_max * num_classes)
        top_scores, top_idx = padded.view(len(active), -1).topk(k, dim=1)  # (A, k)
        parent_slot, cls = top_idx // num_classes, top_idx % num_classes
        parent_n = row_of.gather(1, parent_slot)  # (A, k) index into hyps
        chosen_lp = log_probs[parent_n, cls]  # (A, k)
        chosen_lm = lm_delta[parent_n, cls.clamp(max=num_classes - 2)] if lm is not None else None

        top_scores_l, parent_l, cls_l, lp_l = (top_scores.tolist(), parent_n.tolist(), cls.tolist(),
                                                chosen_lp.tolist())
        lm_l = chosen_lm.tolist() if chosen_lm is not None else None
        for a, b in enumerate(active):
            pool: dict[tuple[int, ...], _Hyp] = {}
            for j in range(k):
                if top_scores_l[a][j] == -math.inf:
                    break
                parent, c, lp = hyps[parent_l[a][j]], cls_l[a][j], lp_l[a][j]
                if c == blank_id:
                    child = _Hyp(parent.tokens, parent.am + lp, parent.lm, parent.lm_state, parent.times,
                                 parent.confs, parent_row=parent.row)
                else:
                    lm_score, lm_state = parent.lm, parent.lm_state
                    if lm is not None:
                        lm_score, lm_state = lm_score + lm_l[a][j], lm.advance(lm_state, c)
                    child = _Hyp(parent.tokens + (c,), parent.am + lp, lm_score, lm_state, parent.times + (t,),
                                 parent.confs + (math.exp(lp),), parent_row=parent.row)
                    child.row = -1  # needs a prediction step
                _merge(pool, child)
            beams[b] = list(pool.values())

        # New store: blank children reuse their parent's row; label children get a fresh step.
        # Utterances that end on this frame need no rows any more.
        survivors = [h for b in active if t + 1 < lengths[b] for h in beams[b]]
        keep = [h for h in survivors if h.row is None]
        grow = [h for h in survivors if h.row == -1]
        keep_rows = torch.tensor([h.parent_row for h in keep], dtype=torch.long, device=device)
        new_g = g_store.index_select(0, keep_rows)
        new_state = _index_state(state_store, keep_rows)
        for i, h in enumerate(keep):
            h.row = i
        if grow:
            parent_rows = torch.tensor([h.parent_row for h in grow], dtype=torch.long, device=device)
            tokens = torch.tensor([h.tokens[-1] for h in grow], dtype=torch.long, device=device)
            out, grown_state = prediction_net.step(tokens, _index_state(state_store, parent_rows))
            grown_g = joint.project_prediction(out.unsqueeze(1)).squeeze(1)  # (M, J)
            new_g = torch.cat([new_g, grown_g], dim=0)
            new_state = _cat_state(new_state, tuple(grown_state))
            for i, h in enumerate(grow):
                h.row = len(keep) + i
        g_store, state_store = new_g, new_state

    return [_finish(beams[b], lm, lm_weight, score_norm, nbest or beam_size) for b in range(batch)]


@torch.inference_mode()
def beam_search(
    encoder_out: torch.Tensor,
    encoder_lengths: torch.Tensor,
    prediction_net: torch.nn.Module,
    joint: torch.nn.Module,
    blank_id: int,
    beam_size: int = 4,
    alsd_max_target_len: float | int = 1.0,
    lm: Optional[Any] = None,
    lm_weight: float = 0.0,
    score_norm: bool = True,
    nbest: Optional[int] = None,
) -> list[list[BeamHypothesis]]:
    """Alignment-length synchronous decoding (NeMo's ``search_type="alsd"``), several labels per frame.

    Args:
        encoder_out: (B, T, D) float; encoder_lengths: (B,) int64.
        prediction_net, joint, blank_id, lm, lm_weight, score_norm, nbest: as in
            :func:`modified_beam_search`.
        beam_size: hypotheses kept per step, and label expansions tried per hypothesis.
        alsd_max_target_len: most labels per utterance: an int, or a float = that fraction of
            the utterance's frames (NeMo's default 1.0); capped at ``T - 1`` as in NeMo.

    Returns:
        For each utterance, up to ``nbest`` :class:`BeamHypothesis`, best first.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    f = joint.project_encoder(encoder_out)  # (B, T, J)
    start = _start(prediction_net, joint, encoder_out.device, f.dtype)
    out = []
    for b in range(encoder_out.shape[0]):
        n = int(encoder_lengths[b])
        out.append(_alsd_one(f[b, :n], start, prediction_net, joint, blank_id, beam_size, alsd_max_target_len,
                             lm, lm_weight, score_norm, nbest or beam_size))
    return out


def _alsd_one(f: torch.Tensor, start, prediction_net, joint, blank_id: int, beam_size: int,
              alsd_max_target_len: float | int, lm, lm_weight: float, score_norm: bool,
              nbest: int) -> list[BeamHypothesis]:
    """ALSD over one utterance's projected encoder frames f (T, J)."""
    num_frames = f.shape[0]
    device = f.device
    lm_start = lm.start() if lm is not None else None
    if num_frames == 0:
        return _finish([_Hyp((), 0.0, 0.0, lm_start, (), ())], lm, lm_weight, score_norm, nbest)
    if isinstance(alsd_max_target_len, float):
        u_max = int(alsd_max_target_len * num_frames)
    else:
        u_max = int(alsd_max_target_len)
    u_max = max(0, min(u_max, num_frames - 1))
    # Cache: labels -> (projected prediction output (J,), state with N=1).
    cache: dict[tuple[int, ...], tuple[torch.Tensor, tuple[torch.Tensor, ...]]] = {(): (start[0][0], start[1])}
    beam = [_Hyp((), 0.0, 0.0, lm_start, (), ())]
    final: dict[tuple[int, ...], _Hyp] = {}
    checked = False
    for i in range(num_frames + u_max):
        beam = [h for h in beam if i - len(h.tokens) < num_frames]
        if not beam:
            break
        missing = [h for h in beam if h.tokens not in cache]
        if missing:
            parents = [cache[h.tokens[:-1]][1] for h in missing]
            state = tuple(torch.cat(parts, dim=1) for parts in zip(*parents))
            tokens = torch.tensor([h.tokens[-1] for h in missing], dtype=torch.long, device=device)
            out, new_state = prediction_net.step(tokens, state)
            g_new = joint.project_prediction(out.unsqueeze(1)).squeeze(1)  # (M, J)
            for m, h in enumerate(missing):
                cache[h.tokens] = (g_new[m], tuple(s[:, m:m + 1] for s in new_state))
        frames = torch.tensor([i - len(h.tokens) for h in beam], device=device)
        g = torch.stack([cache[h.tokens][0] for h in beam])  # (N, J)
        log_probs = joint.joint_after_projection(f[frames], g).float().log_softmax(-1)  # (N, V+1)
        if not checked:
            _check_lm(lm, lm_weight, log_probs.shape[-1], blank_id)
            checked = True
        label_lp = log_probs.clone()
        label_lp[:, blank_id] = -math.inf
        fused = label_lp
        if lm is not None:
            lm_delta = torch.stack([lm.token_scores(h.lm_state) for h in beam]).to(device)  # (N, V)
            fused = label_lp.clone()
            fused[:, :-1] += lm_weight * lm_delta
        k = min(beam_size, log_probs.shape[-1] - 1)
        top_lp, top_cls = fused.topk(k, dim=1)  # (N, k), by fused score increment
        blank_l = log_probs[:, blank_id].tolist()
        top_cls_l = top_cls.tolist()
        am_l = log_probs.gather(1, top_cls).tolist()
        lm_l = lm_delta.gather(1, top_cls).tolist() if lm is not None else None
        frames_l = frames.tolist()
        pool: dict[tuple[int, ...], _Hyp] = {}
        ended: dict[tuple[int, ...], _Hyp] = {}
        for n, h in enumerate(beam):
            t = frames_l[n]
            child = _Hyp(h.tokens, h.am + blank_l[n], h.lm, h.lm_state, h.times, h.confs)
            _merge(ended if t == num_frames - 1 else pool, child)
            if len(h.tokens) >= u_max:
                continue
            for j in range(k):
                c, lp = top_cls_l[n][j], am_l[n][j]
                if lp == -math.inf:
                    continue
                lm_score, lm_state = h.lm, h.lm_state
                if lm is not None:
                    lm_score, lm_state = lm_score + lm_l[n][j], lm.advance(lm_state, c)
                _merge(pool, _Hyp(h.tokens + (c,), h.am + lp, lm_score, lm_state, h.times + (t,),
                                  h.confs + (math.exp(lp),)))
        for hyp in ended.values():
            _merge(final, hyp)
        beam = sorted(pool.values(), key=lambda x: x.fused(lm_weight), reverse=True)[:beam_size]
    return _finish(list(final.values()) or beam, lm, lm_weight, score_norm, nbest)
