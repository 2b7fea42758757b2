"""Batched label-looping beam search for Transducers: several labels per frame, all utterances at once.

The search is alignment-length synchronous (ALSD, Saon et al. 2020) run on fixed (B, K) tensors,
in the way NeMo's ``malsd_batch`` lays it out: every one of the ``K = beam_size`` hypotheses of
every utterance sits on its own frame; one step scores all B*K hypotheses with one joiner call,
and each candidate either emits blank (moves to its next frame) or a label (stays on its frame),
so a hypothesis can take several labels on one frame, as models trained on the regular RNN-T
topology need. After a step every live hypothesis has ``frame + labels = step``, so two
hypotheses with the same labels always sit on the same frame and are merged exactly (their
probabilities added), which makes a wide enough beam return exact RNN-T sequence
log-probabilities. Per utterance the best ``K`` of the ``K x (V+1)`` candidates survive; a
hypothesis that has used all its frames is kept as it is and competes with the live ones until
every hypothesis of the batch has finished. The prediction network then runs once, for the
survivors that took a label only.

Each step costs one joiner call on B*K rows, one top-k, one merge over (B, K, K) and one
prediction step on the emitting rows, independent of how many utterances are in the batch, so it
is worth running batched (see benchmarks/decoding.py for its speed next to greedy search).

Shallow fusion with an n-gram scorer of :mod:`myna.decoding.lm` adds ``lm_weight`` times the LM
ln-probability of each label to the ranking score (the LM states are per hypothesis, in Python).

>>> nbest = batched_beam_search(enc, enc_len, model.decoder, model.joint, model.blank_id, beam_size=4)
>>> nbest[0][0].tokens, nbest[0][0].score
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from myna.decoding.beam import BeamHypothesis, _check_lm

__all__ = ["batched_beam_search"]

_HASH_MULTIPLIER = 6364136223846793005  # a 64-bit LCG multiplier: label sequences -> int64 keys (wrapping)


@torch.inference_mode()
def batched_beam_search(
    encoder_out: torch.Tensor,
    encoder_lengths: torch.Tensor,
    prediction_net: torch.nn.Module,
    joint: torch.nn.Module,
    blank_id: int,
    beam_size: int = 4,
    max_symbols_per_step: Optional[int] = 10,
    lm: Optional[Any] = None,
    lm_weight: float = 0.0,
    score_norm: bool = True,
    nbest: Optional[int] = None,
) -> list[list[BeamHypothesis]]:
    """Beam search over a padded batch, several labels per frame (NeMo ``malsd_batch``-style).

    Args:
        encoder_out: (B, T, D) float encoder output.
        encoder_lengths: (B,) int64 valid frames.
        prediction_net: ``initial_state(n, device, dtype)``, ``step(tokens (N,) | None, state)
            -> (out (N, H), state)``; state tensors have the batch axis in dim 1.
        joint: ``project_encoder`` (B, T, D) -> (B, T, J), ``project_prediction`` (N, 1, H) ->
            (N, 1, J), ``joint_after_projection`` (N, J) + (N, J) -> (N, V+1) raw logits.
        blank_id: blank class (the last one when an LM is used).
        beam_size: K, hypotheses kept per utterance.
        max_symbols_per_step: labels one hypothesis may take on one frame before it must emit
            blank (None: no cap).
        lm: a scorer from :mod:`myna.decoding.lm` or None; lm_weight: its fusion weight.
        score_norm: rank the final n-best by ``score / (len(tokens) + 1)`` (NeMo's default).
        nbest: length of each returned list (default ``beam_size``).

    Returns:
        For each utterance, up to ``nbest`` :class:`BeamHypothesis`, best first; ``score`` is
        ``am_score + lm_weight * lm_score``, ``timestamps`` the frame of each label,
        ``confidences`` its softmax probability.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if lm is None and lm_weight != 0.0:
        raise ValueError(f"lm_weight={lm_weight} given without an LM")
    batch, max_t, _ = encoder_out.shape
    k_size = beam_size
    device = encoder_out.device
    f = joint.project_encoder(encoder_out)  # (B, T, J)
    lengths = encoder_lengths.to(device).long()
    last_frame = (lengths - 1).clamp(min=0)  # (B,)
    rows = batch * k_size
    utt_of_row = torch.arange(batch, device=device).repeat_interleave(k_size)  # (B*K,)

    state = prediction_net.initial_state(rows, device, f.dtype)
    pred_out, state = prediction_net.step(None, state)  # (B*K, H)
    state = tuple(state)
    g = joint.project_prediction(pred_out.unsqueeze(1)).squeeze(1)  # (B*K, J)

    minus_inf = torch.tensor(-math.inf, device=device)
    am = torch.full((batch, k_size), -math.inf, device=device)
    am[:, 0] = 0.0
    lm_score = torch.zeros(batch, k_size, device=device)
    frame = torch.zeros(batch, k_size, dtype=torch.long, device=device)
    on_frame = torch.zeros(batch, k_size, dtype=torch.long, device=device)  # labels taken on the current frame
    num_labels = torch.zeros(batch, k_size, dtype=torch.long, device=device)
    key = torch.zeros(batch, k_size, dtype=torch.long, device=device)  # hash of the label sequence
    lm_states = [lm.start() for _ in range(rows)] if lm is not None else None

    # Back-pointers, one entry per step: parent slot (B, K), label taken (-1: none), its frame and probability.
    parents: list[torch.Tensor] = []
    labels_taken: list[torch.Tensor] = []
    frames_taken: list[torch.Tensor] = []
    probs_taken: list[torch.Tensor] = []
    slot = torch.arange(k_size, device=device).expand(batch, k_size)
    alive = am > -math.inf
    live = alive & (frame < lengths[:, None])  # (B, K): hypotheses with frames left
    checked = False

    while bool(live.any()):
        safe_frame = torch.minimum(frame, last_frame[:, None]).reshape(-1)  # (B*K,)
        logits = joint.joint_after_projection(f[utt_of_row, safe_frame], g)  # (B*K, V+1)
        log_probs = logits.float().log_softmax(-1)
        num_classes = log_probs.shape[-1]
        if not checked:
            _check_lm(lm, lm_weight, num_classes, blank_id)
            checked = True
        log_probs = log_probs.view(batch, k_size, num_classes)
        fused = am + lm_weight * lm_score  # (B, K)
        cand = fused.unsqueeze(-1) + log_probs  # (B, K, V+1)
        lm_delta = None
        if lm is not None:
            lm_delta = torch.zeros(batch, k_size, num_classes, device=device)
            flat_live = live.reshape(-1).tolist()
            scores = [lm.token_scores(s) if on else None for s, on in zip(lm_states, flat_live)]
            if any(flat_live):
                stacked = torch.stack([s for s in scores if s is not None]).to(device)  # (N, V)
                lm_delta.view(rows, num_classes)[torch.tensor(flat_live, device=device), :-1] = stacked
            cand = cand + lm_weight * lm_delta
        capped = on_frame >= max_symbols_per_step if max_symbols_per_step is not None else torch.zeros_like(live)
        label_mask = torch.ones(num_classes, dtype=torch.bool, device=device)
        label_mask[blank_id] = False
        cand = torch.where((capped.unsqueeze(-1) & label_mask) | ~live.unsqueeze(-1), minus_inf, cand)
        # A finished hypothesis competes unchanged, as the extra class num_classes ("stay").
        stay = torch.where(alive & ~live, fused, minus_inf).unsqueeze(-1)  # (B, K, 1)
        cand = torch.cat([cand, stay], dim=-1).view(batch, -1)  # (B, K*(V+2))
        top, index = cand.topk(k_size, dim=1)  # (B, K)
        parent, cls = index // (num_classes + 1), index % (num_classes + 1)
        is_label = (cls != blank_id) & (cls < num_classes) & (top > -math.inf)
        is_blank = (cls == blank_id) & (top > -math.inf)
        safe_cls = cls.clamp(max=num_classes - 1)
        step_lp = log_probs.gather(1, parent.unsqueeze(-1).expand(-1, -1, num_classes)).gather(
            2, safe_cls.unsqueeze(-1)).squeeze(-1)  # (B, K)
        am = torch.where(is_label | is_blank, am.gather(1, parent) + step_lp, am.gather(1, parent))
        am = torch.where(top > -math.inf, am, minus_inf)
        new_lm = lm_score.gather(1, parent)
        if lm_delta is not None:
            chosen = lm_delta.gather(1, parent.unsqueeze(-1).expand(-1, -1, num_classes)).gather(
                2, safe_cls.unsqueeze(-1)).squeeze(-1)
            new_lm = torch.where(is_label, new_lm + chosen, new_lm)
        lm_score = new_lm
        frame_before = frame.gather(1, parent)
        frame = frame_before + is_blank.long()
        on_frame = torch.where(is_blank, 0, on_frame.gather(1, parent) + is_label.long())
        num_labels = num_labels.gather(1, parent) + is_label.long()
        parent_key = key.gather(1, parent)
        key = torch.where(is_label, parent_key * _HASH_MULTIPLIER + 1 + cls, parent_key)

        # Merge equal label sequences (same key, same length, hence same frame): add probabilities.
        alive = am > -math.inf
        same = ((key.unsqueeze(2) == key.unsqueeze(1)) & (num_labels.unsqueeze(2) == num_labels.unsqueeze(1))
                & (frame.unsqueeze(2) == frame.unsqueeze(1)) & alive.unsqueeze(1) & alive.unsqueeze(2))  # (B, K, K)
        if bool((same.sum(-1) > 1).any()):
            grouped = torch.where(same, am.unsqueeze(1), minus_inf)  # (B, K, K): row i holds its group's scores
            merged = torch.logsumexp(grouped, dim=-1)
            rank = torch.where(same, (am + lm_weight * lm_score).unsqueeze(1), minus_inf)
            leader = rank.argmax(-1) == slot  # the best-scored member keeps the merged score
            # ... and the fewest labels on this frame of any member: the cap holds for that alignment.
            big = torch.iinfo(on_frame.dtype).max
            on_frame = torch.where(same, on_frame.unsqueeze(1), big).min(-1).values.where(alive, on_frame)
            am = torch.where(alive & leader, merged, torch.where(alive, minus_inf, am))
            alive = am > -math.inf

        parents.append(parent)
        labels_taken.append(torch.where(is_label & alive, cls, -1))
        frames_taken.append(frame_before)
        probs_taken.append(step_lp.exp())

        # Prediction network: parents' outputs, then one step for the survivors that took a label.
        flat_parent = (parent + torch.arange(batch, device=device).unsqueeze(1) * k_size).reshape(-1)  # (B*K,)
        g = g.index_select(0, flat_parent)
        state = tuple(s.index_select(1, flat_parent) for s in state)
        emit = (is_label & alive).reshape(-1).nonzero().flatten()
        if emit.numel():
            out, new_state = prediction_net.step(cls.reshape(-1)[emit], tuple(s.index_select(1, emit) for s in state))
            g = g.index_copy(0, emit, joint.project_prediction(out.unsqueeze(1)).squeeze(1))
            state = tuple(s.index_copy(1, emit, n) for s, n in zip(state, new_state))
        if lm_states is not None:
            parent_l, cls_l, emit_l = flat_parent.tolist(), cls.reshape(-1).tolist(), set(emit.tolist())
            lm_states = [lm.advance(lm_states[p], cls_l[r]) if r in emit_l else lm_states[p]
                         for r, p in enumerate(parent_l)]
        live = alive & (frame < lengths[:, None])

    return _backtrack(am, lm_score, num_labels, parents, labels_taken, frames_taken, probs_taken, lm, lm_states,
                      lm_weight, score_norm, nbest or beam_size)


def _backtrack(am, lm_score, num_labels, parents, labels_taken, frames_taken, probs_taken, lm, lm_states,
               lm_weight: float, score_norm: bool, nbest: int) -> list[list[BeamHypothesis]]:
    """Follow the back-pointers from every surviving slot; close the LM; rank. All tensors (B, K)."""
    batch, k_size = am.shape
    am_l, lm_l, n_l = am.tolist(), lm_score.tolist(), num_labels.tolist()
    if parents:
        parent_np = torch.stack(parents).cpu().numpy()  # (S, B, K)
        label_np = torch.stack(labels_taken).cpu().numpy()
        frame_np = torch.stack(frames_taken).cpu().numpy()
        prob_np = torch.stack(probs_taken).float().cpu().numpy()
    out: list[list[BeamHypothesis]] = []
    for b in range(batch):
        done = []
        for k in range(k_size):
            if am_l[b][k] == -math.inf:
                continue
            tokens, times, confs = [], [], []
            cursor = k
            for s in range(len(parents) - 1, -1, -1):
                label = int(label_np[s, b, cursor])
                if label >= 0:
                    tokens.append(label)
                    times.append(int(frame_np[s, b, cursor]))
                    confs.append(float(prob_np[s, b, cursor]))
                cursor = int(parent_np[s, b, cursor])
            tokens.reverse(), times.reverse(), confs.reverse()
            assert len(tokens) == n_l[b][k]
            lm_total = lm_l[b][k]
            if lm is not None:
                lm_total += lm.final_score(lm_states[b * k_size + k])
            done.append(BeamHypothesis(tokens=tokens, timestamps=times, confidences=confs,
                                       score=am_l[b][k] + lm_weight * lm_total, am_score=am_l[b][k], lm_score=lm_total))
        rank = (lambda h: h.score / (len(h.tokens) + 1)) if score_norm else (lambda h: h.score)
        done.sort(key=rank, reverse=True)
        out.append(done[:nbest] or [BeamHypothesis()])
    return out

