"""Batched greedy search for Transducers and CTC.

Transducer greedy search is frame-synchronous: every utterance sits on its own current frame
``t``; at each step the joiner scores (frame, last label) for the whole batch, utterances whose
argmax is a label emit it and advance their prediction network, and the others (blank, or
``max_symbols_per_step`` reached) move to their next frame. All utterances step together, so one
joiner call and at most one prediction-network call serve the batch per step.

>>> hyps = transducer_greedy_search(enc, enc_len, prediction_net, joint, blank_id=128)
>>> hyps[0].tokens, hyps[0].timestamps
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["Hypothesis", "transducer_greedy_search", "ctc_greedy_search"]


@dataclass
class Hypothesis:
    """One decoded utterance: token ids, the frame of each token, and per-token confidence."""

    tokens: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    score: float = 0.0
    text: str | None = None


def _select_state(new, old, take: torch.Tensor):
    """Per-utterance choice between two LSTM states (tuples of (layers, B, H) tensors)."""
    mask = take.view(1, -1, 1)
    return tuple(torch.where(mask, n, o) for n, o in zip(new, old))


@torch.inference_mode()
def transducer_greedy_search(
    encoder_out: torch.Tensor,
    encoder_lengths: torch.Tensor,
    prediction_net: torch.nn.Module,
    joint: torch.nn.Module,
    blank_id: int,
    max_symbols_per_step: int = 10,
) -> list[Hypothesis]:
    """Batched frame-synchronous greedy search.

    Args:
        encoder_out: (B, T, D) float, encoder output.
        encoder_lengths: (B,) int64, valid frames per utterance.
        prediction_net: module with ``step(tokens (B,) | None, state) -> (out (B, H), state)``
            and ``initial_state(batch, device, dtype)``.
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
    g = joint.project_prediction(pred_out.unsqueeze(1)).squeeze(1)  # (B, J)

    hyps = [Hypothesis() for _ in range(batch)]
    frame = torch.zeros(batch, dtype=torch.long, device=device)
    symbols_on_frame = torch.zeros(batch, dtype=torch.long, device=device)
    scores = torch.zeros(batch, dtype=torch.float32, device=device)
    rows = torch.arange(batch, device=device)
    active = frame < lengths
    while bool(active.any()):
        f_t = f[rows, frame.clamp(max=max_t - 1)]  # (B, J)
        log_probs = joint.joint_after_projection(f_t, g).float().log_softmax(-1)  # (B, V+1)
        best_lp, best = log_probs.max(-1)
        scores += torch.where(active, best_lp, torch.zeros_like(best_lp))
        emit = active & (best != blank_id)
        if bool(emit.any()):
            for b in emit.nonzero().flatten().tolist():
                hyps[b].tokens.append(int(best[b]))
                hyps[b].timestamps.append(int(frame[b]))
                hyps[b].confidences.append(float(best_lp[b].exp()))
            new_out, new_state = prediction_net.step(best.masked_fill(~emit, blank_id), state)
            state = _select_state(new_state, state, emit)
            g = torch.where(emit.unsqueeze(1), joint.project_prediction(new_out.unsqueeze(1)).squeeze(1), g)
        symbols_on_frame = torch.where(emit, symbols_on_frame + 1, torch.zeros_like(symbols_on_frame))
        advance = active & (~emit | (symbols_on_frame >= max_symbols_per_step))
        frame = frame + advance.long()
        symbols_on_frame = torch.where(advance, torch.zeros_like(symbols_on_frame), symbols_on_frame)
        active = frame < lengths
    for hyp, score in zip(hyps, scores.tolist()):
        hyp.score = score
    return hyps


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
