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
    lookahead_frames: int = 8,
) -> list[Hypothesis]:
    """Batched label-looping greedy search with look-ahead over blank frames.

    Each outer step finds, for every unfinished utterance, its next label. The joiner scores the
    utterance's next ``lookahead_frames`` frames against its current prediction-network output in
    one call (the prediction output cannot change before a label is emitted, so every frame up to
    the first label is scored exactly as frame-by-frame search scores it); the first non-blank
    argmax in the window is the label, and an utterance with blanks only moves past the window and
    is scored again. Then the prediction network advances once, for the utterances that found a
    label only. After ``max_symbols_per_step`` labels on one frame the utterance moves on without
    a blank, as NeMo's greedy search does. Results equal frame-by-frame greedy search; the number
    of joiner calls falls from one per frame to about one per label.

    Args:
        encoder_out: (B, T, D) float, encoder output.
        encoder_lengths: (B,) int64, valid frames per utterance.
        prediction_net: module with ``step(tokens (N,) | None, state) -> (out (N, H), state)``
            and ``initial_state(batch, device, dtype)``; state tensors have the batch axis in dim 1.
        joint: module with ``project_encoder`` (B, T, D) -> (B, T, J), ``project_prediction``
            (B, U, H) -> (B, U, J) and ``joint_after_projection`` (N, J) x (N, J) -> (N, V+1).
        blank_id: index of blank in the joiner output.
        max_symbols_per_step: labels emitted on one frame at most before moving on.
        lookahead_frames: frames the joiner scores per call (1: frame-by-frame).

    Returns:
        B hypotheses with token ids, frame indices and softmax confidence of each token;
        ``score`` is the sum of the chosen labels' and blanks' log-probabilities.
    """
    if lookahead_frames < 1:
        raise ValueError(f"lookahead_frames={lookahead_frames} must be >= 1")
    batch, max_t, _ = encoder_out.shape
    device = encoder_out.device
    lengths = encoder_lengths.to(device)
    f = joint.project_encoder(encoder_out)  # (B, T, J)
    if batch == 1:
        return [_greedy_one(f[0], int(lengths[0]), prediction_net, joint, blank_id, max_symbols_per_step,
                            lookahead_frames)]
    width = min(lookahead_frames, max(max_t, 1))
    offsets = torch.arange(width, device=device)  # (W,)
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
            start = frame[searching]  # (S,)
            window = start[:, None] + offsets  # (S, W) frame indices
            in_range = window < lengths[searching][:, None]  # (S, W)
            frames_f = f[searching[:, None], window.clamp(max=max_t - 1)]  # (S, W, J)
            frames_g = g[searching][:, None, :].expand_as(frames_f)  # (S, W, J)
            log_probs = joint.joint_after_projection(
                frames_f.reshape(-1, frames_f.shape[-1]), frames_g.reshape(-1, frames_g.shape[-1])
            ).float().log_softmax(-1).view(len(searching), width, -1)  # (S, W, V+1)
            best_lp, best = log_probs.max(-1)  # (S, W)
            is_label = (best != blank_id) & in_range
            has_label = is_label.any(1)  # (S,)
            first = is_label.to(torch.uint8).argmax(1)  # (S,) first label's offset (0 when none)
            blanks = torch.where(has_label, first, in_range.sum(1))  # (S,) blank frames consumed
            consumed = offsets[None, :] < blanks[:, None]  # (S, W)
            scores[searching] += (best_lp * consumed).sum(1)
            frame[searching] = start + blanks
            moved = blanks > 0
            symbols_on_frame[searching[moved]] = 0
            hit = searching[has_label]
            if hit.numel():
                at = first[has_label]
                found.append(hit)
                label[hit] = best[has_label, at]
                label_lp[hit] = best_lp[has_label, at]
                scores[hit] += label_lp[hit]
            missed = searching[~has_label]
            searching = missed[frame[missed] < lengths[missed]]
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


def _greedy_one(f: torch.Tensor, length: int, prediction_net, joint, blank_id: int, max_symbols_per_step: int,
                lookahead_frames: int) -> Hypothesis:
    """The same search for one utterance, with the frame position in Python (no batch bookkeeping).

    Args:
        f: (T, J) projected encoder frames of the utterance.
        length: valid frames (<= T).

    Returns:
        its hypothesis, equal to the batched search's.
    """
    hyp = Hypothesis()
    state = prediction_net.initial_state(1, f.device, f.dtype)
    pred_out, state = prediction_net.step(None, state)  # (1, H)
    g = joint.project_prediction(pred_out.unsqueeze(1)).squeeze(1)  # (1, J)
    frame, symbols_on_frame, score = 0, 0, 0.0
    while frame < length:
        stop = min(frame + lookahead_frames, length)
        log_probs = joint.joint_after_projection(f[frame:stop], g.expand(stop - frame, -1)).float().log_softmax(-1)
        best_lp, best = log_probs.max(-1)  # (w,)
        ids, lps = best.tolist(), best_lp.tolist()
        first = next((k for k, token in enumerate(ids) if token != blank_id), None)
        if first is None:  # blanks only: move past the window
            score += sum(lps)
            frame, symbols_on_frame = stop, 0
            continue
        score += sum(lps[: first + 1])
        if first:
            frame, symbols_on_frame = frame + first, 0
        hyp.tokens.append(ids[first])
        hyp.timestamps.append(frame)
        hyp.confidences.append(math.exp(lps[first]))
        pred_out, state = prediction_net.step(best[first : first + 1], state)
        g = joint.project_prediction(pred_out.unsqueeze(1)).squeeze(1)
        symbols_on_frame += 1
        if symbols_on_frame >= max_symbols_per_step:
            frame, symbols_on_frame = frame + 1, 0
    hyp.score = score
    return hyp


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
