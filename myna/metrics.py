"""Word and character error rates (jiwer), with the edit counts behind them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jiwer

__all__ = ["ErrorRates", "error_rates", "word_error_rate"]


@dataclass(frozen=True)
class ErrorRates:
    """Corpus-level WER and CER (fractions, not percent) and the word-level edit counts."""

    wer: float
    cer: float
    substitutions: int
    insertions: int
    deletions: int
    reference_words: int

    def summary(self) -> str:
        return (
            f"WER: {100 * self.wer:.2f}%  CER: {100 * self.cer:.2f}%  "
            f"(S={self.substitutions} I={self.insertions} D={self.deletions} N={self.reference_words})"
        )


def _stripped(texts: Sequence[str]) -> list[str]:
    return [" ".join(t.split()) for t in texts]


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorRates:
    """Corpus WER/CER over paired transcripts.

    Empty hypotheses count their reference's words as deletions; empty references count the
    hypothesis words as insertions (and are excluded from the denominator, as usual).
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    # jiwer refuses empty strings, so pairs with an empty side are counted here directly.
    refs, hyps = _stripped(references), _stripped(hypotheses)
    subs = ins = dels = n_words = 0
    char_edits = n_chars = 0
    pairs_r, pairs_h = [], []
    for ref, hyp in zip(refs, hyps):
        if not ref:
            ins += len(hyp.split())
            char_edits += len(hyp)
            continue
        if not hyp:
            dels += len(ref.split())
            n_words += len(ref.split())
            char_edits += len(ref)
            n_chars += len(ref)
            continue
        pairs_r.append(ref)
        pairs_h.append(hyp)
    if pairs_r:
        words = jiwer.process_words(pairs_r, pairs_h)
        subs += words.substitutions
        ins += words.insertions
        dels += words.deletions
        n_words += sum(len(r.split()) for r in pairs_r)
        chars = jiwer.process_characters(pairs_r, pairs_h)
        char_edits += chars.substitutions + chars.insertions + chars.deletions
        n_chars += sum(len(r) for r in pairs_r)
    wer = (subs + ins + dels) / n_words if n_words else float(ins > 0)
    cer = char_edits / n_chars if n_chars else float(char_edits > 0)
    return ErrorRates(wer, cer, subs, ins, dels, n_words)


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER as a fraction."""
    return error_rates(references, hypotheses).wer
