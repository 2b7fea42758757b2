"""Token, word and segment times of a hypothesis, in NeMo's ``Hypothesis.timestamp`` layout.

Each entry has ``start_offset`` / ``end_offset`` in encoder frames and ``start`` / ``end`` in
seconds (offset x ``frame_seconds``, i.e. the feature hop times the encoder's subsampling, as
NeMo's ``window_stride * subsampling_factor``). A token occupies the frame it was emitted on
(``end_offset = start_offset + 1``, NeMo's RNN-T convention; NeMo's CTC offsets span the
token's repeated frames instead). A word starts with a piece that begins with "▁"; a segment
ends with a word ending in ``.``, ``?`` or ``!``.

>>> hyp.timestamp = timestamps(hyp, tokenizer, frame_seconds=0.04)
>>> [(w["word"], w["start"], w["end"]) for w in hyp.timestamp["word"]]
[('hello', 0.12, 0.44), ('world', 0.6, 0.92)]
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["timestamps"]

_WORD_START = "\u2581"
_SEGMENT_END = (".", "?", "!")


def _span(items: Sequence[dict], key: str, text: str, frame_seconds: float) -> dict[str, Any]:
    start, end = items[0]["start_offset"], items[-1]["end_offset"]
    return {key: text, "start_offset": start, "end_offset": end, "start": start * frame_seconds,
            "end": end * frame_seconds}


def timestamps(hyp, tokenizer, frame_seconds: float) -> dict[str, list]:
    """NeMo-shaped timestamps of ``hyp`` (its ``tokens`` and their frames ``timestamps``).

    Args:
        hyp: a :class:`~myna.decoding.greedy.Hypothesis` (or beam hypothesis).
        tokenizer: with ``id_to_piece`` and ``decode``.
        frame_seconds: seconds per encoder frame.

    Returns:
        ``{"timestep": [frame per token], "char": [...], "word": [...], "segment": [...]}``;
        ``char`` entries name the token's text (``"char"``), ``word`` and ``segment`` entries
        their text.
    """
    chars = [_span([{"start_offset": t, "end_offset": t + 1}], "char", tokenizer.decode([tok]), frame_seconds)
             for tok, t in zip(hyp.tokens, hyp.timestamps)]
    words: list[dict] = []
    current: list[int] = []
    for i, tok in enumerate(hyp.tokens):
        if current and tokenizer.id_to_piece(tok).startswith(_WORD_START):
            words.append(_span([chars[j] for j in current], "word", tokenizer.decode([hyp.tokens[j] for j in current]),
                               frame_seconds))
            current = []
        current.append(i)
    if current:
        words.append(_span([chars[j] for j in current], "word", tokenizer.decode([hyp.tokens[j] for j in current]),
                           frame_seconds))
    words = [w for w in words if w["word"]]
    segments: list[dict] = []
    start = 0
    for i, word in enumerate(words):
        if word["word"].endswith(_SEGMENT_END) or i == len(words) - 1:
            part = words[start:i + 1]
            segments.append(_span(part, "segment", " ".join(w["word"] for w in part), frame_seconds))
            start = i + 1
    return {"timestep": list(hyp.timestamps), "char": chars, "word": words, "segment": segments}
