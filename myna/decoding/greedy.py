"""Batched greedy search for Transducers and CTC.

Transducer greedy search is label-looping (NeMo's ``loop_labels`` greedy): every utterance sits
on its own current frame; an inner loop runs only the joiner, moving utterances whose argmax is
blank to their next frame until each has found its next label, then the prediction network
advances once for exactly the utterances that found one. All utterances advance together, the
prediction network never runs for an utterance that emitted nothing, and the results equal
frame-by-frame greedy search.

>>> hyps = transducer_greedy_search(enc, enc_len, prediction_net, joint, blank_id=128)
>>> hyps[0].tokens, hyps[0].timestamps
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

__all__ = ["Hypothesis", "transducer_greedy_search", "ctc_greedy_search"]


@dataclass
class Hypothesis:
    """One decoded utterance: token ids, the frame of each token, and per-token confidence.

    ``timestamp`` is filled by ``model.transcribe(..., timestamps=True)`` in NeMo's layout
    (``"timestep"``, ``"char"``, ``"word"``, ``"segment"``; see :mod:`myna.decoding.timestamps`).
    """

    tokens: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    score: float = 0.0
    text: str | None = None
    timestamp: dict = field(default_factory=dict)


@torch.inference_mode()
def transducer_greedy_search(
    encoder_out: torch.Tensor,
    encoder_lengths: torch.Tensor,
    prediction_net: torch.nn.Module,
    joint: torch.nn.Module,
    blank_id: int,
    max_symbols_per_step: int = 10,
) -> list[Hypothesis]:
    """Batched label-looping greedy search.

    Each outer step finds, for every unfinished utterance, its next label: the joiner scores
    (current frame, last label) for the utterances still searching, those whose argmax is blank
    move to their next frame and are scored again (only the joiner runs in this inner loop, on
    the searching utterances only), until each has a label or has run out of frames. Then the
    prediction network advances once, for the utterances that found a label only. After
    ``max_symbols_per_step`` labels on one frame the utterance moves on without a blank, as
    NeMo's greedy search does. Results equal frame-by-frame greedy search.

    Args:
        encoder_out: (B, T, D) float, encoder output.
        encoder_lengths: (B,) int64, valid frames per utterance.
        prediction_net: module with ``step(tokens (N,) | None, state) -> (out (N, H), state)``
            and ``initial_state(batch, device, dtype)``; state tensors have the batch axis in dim 1.
        joint: module with ``project_encoder`` (B, T, D) -> (B, T, J), ``project_prediction``
            (B, U, H) -> (B, U, J) and ``joint_after_projection`` (..., J) x (..., J) -> (..., V+1).
        blank_id: index of blank in the joiner output.
        max_symbols_per_step: labels emitted on one frame at most before moving on.

    Returns:
        B hypotheses with token ids, frame indices and softmax confidence of each token;
        ``score`` is the sum of the chosen labels' and blanks' log-probabilities.
    """
    batch, max_t, _ = encoder_out.shape
    device = encoder_out.device
    lengths = encoder_lengths.to(device)
    f = joint.project_encoder(encoder_out)  # (B, T, J)
    state = prediction_net.initial_state(batch, device, f.dtype)
    pred_out, state = prediction_net.step(None, state)  # (B, H)
    state = tuple(state)
    g = joint.project_prediction(pred_out.unsqueeze(1)).squeeze(1)  # (B, J)

    hyps = [Hypothesis() for _ in range(batch)]
    frame = torch.zeros(batch, dtype=torch.long, device=device)
    symbols_on_frame = torch.zeros(batch, dtype=torch.long, device=device)
    scores = torch.zeros(batch, dtype=torch.float32, device=device)
    label = torch.full((batch,), blank_id, dtype=torch.long, device=device)
    label_lp = torch.zeros(batch, dtype=torch.float32, device=device)
    active = (frame < lengths).nonzero().flatten()  # (A,) utterances with frames left
    while active.numel():
        # Inner loop: joiner only, over utterances still looking for their next label.
        searching = active
        found = []
        while searching.numel():
            log_probs = joint.joint_after_projection(f[searching, frame[searching]], g[searching]).float().log_softmax(-1)
            best_lp, best = log_probs.max(-1)  # (S,)
            scores[searching] += best_lp
            is_label = best != blank_id
            hit = searching[is_label]
            if hit.numel():
                found.append(hit)
                label[hit] = best[is_label]
                label_lp[hit] = best_lp[is_label]
            blank = searching[~is_label]
            frame[blank] += 1
            symbols_on_frame[blank] = 0
            searching = blank[frame[blank] < lengths[blank]]
        if not found:
            break
        emit = torch.cat(found).sort().values  # (E,) utterances that found a label
        for b, token, t, lp in zip(emit.tolist(), label[emit].tolist(), frame[emit].tolist(), label_lp[emit].tolist()):
            hyps[b].tokens.append(token)
            hyps[b].timestamps.append(t)
            hyps[b].confidences.append(math.exp(lp))
        # The prediction network runs for the utterances that emitted only.
        sub_state = tuple(s.index_select(1, emit) for s in state)
        new_out, new_state = prediction_net.step(label[emit], sub_state)
        state = tuple(s.index_copy(1, emit, n) for s, n in zip(state, new_state))
        g = g.index_copy(0, emit, joint.project_prediction(new_out.unsqueeze(1)).squeeze(1))
        symbols_on_frame[emit] += 1
        capped = emit[symbols_on_frame[emit] >= max_symbols_per_step]
        frame[capped] += 1
        symbols_on_frame[capped] = 0
        active = emit[frame[emit] < lengths[emit]]
    for hyp, score in zip(hyps, scores.tolist()):
        hyp.score = score
    return hyps


@torch.inference_mode()
def ctc_greedy_search(log_probs: torch.Tensor, lengths: torch.Tensor, blank_id: int) -> list[Hypothesis]:
    """Best-path CTC decoding: frame argmax, merge repeats, drop blanks.

    Args:
        log_probs: (B, T, V+1) float, per-frame log-probabilities.
        lengths: (B,) int64, valid frames.
        blank_id: blank index.

    Returns:
        B hypotheses; ``timestamps`` is the first frame of each emitted token.
    """
    best_lp, best = log_probs.max(-1)  # (B, T)
    hyps = []
    for b in range(log_probs.shape[0]):
        n = int(lengths[b])
        ids = best[b, :n].tolist()
        hyp = Hypothesis(score=float(best_lp[b, :n].sum()))
        previous = None
        for t, token in enumerate(ids):
            if token != previous and token != blank_id:
                hyp.tokens.append(token)
                hyp.timestamps.append(t)
                hyp.confidences.append(float(best_lp[b, t].exp()))
            previous = token
        hyps.append(hyp)
    return hyps
