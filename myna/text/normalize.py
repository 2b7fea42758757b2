"""Text normalisation for scoring, and the characters a tokenizer cannot write.

A model can only write what its tokenizer produces: a tokenizer trained with case folding
(``nmt_nfkc_cf``, NeMo's default) writes lower-case text, so scoring it against an upper-case
reference counts every word wrong. :class:`ScoringNormalizer` applies one normalisation to the
reference and the hypothesis alike: by default the tokenizer's own (NFKC, case folding when the
tokenizer folds case), optionally NeMo's evaluation options (``do_lowercase``, ``rm_punctuation``
with ``punctuation_marks``, ``separate_punctuation``).

:func:`unknown_characters` finds the characters of some texts that the tokenizer maps to
``<unk>`` (after its normalisation): a reference holding them cannot be matched, and training
text holding them teaches ``<unk>``.

>>> norm = ScoringNormalizer(tokenizer)
>>> norm("HELLO World")  # a case-folding tokenizer
'hello world'
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

__all__ = ["ScoringNormalizer", "unknown_characters", "describe_unknown"]

_BOUNDARY = "\u2581"


def tokenizer_normalize(tokenizer, text: str) -> str:
    """``text`` as the tokenizer's normaliser rewrites it (spaces collapsed); unchanged without one."""
    sp = getattr(tokenizer, "_sp", None)
    if sp is None or not hasattr(sp, "Normalize"):
        return " ".join(text.split())
    return " ".join(sp.Normalize(text).replace(_BOUNDARY, " ").split())


def folds_case(tokenizer) -> bool:
    """Whether the tokenizer's normaliser lower-cases."""
    return tokenizer_normalize(tokenizer, "A") == "a"


@dataclass
class ScoringNormalizer:
    """One normalisation for reference and hypothesis.

    Args:
        tokenizer: apply its normaliser (None: skip).
        lowercase: lower-case (NeMo's ``do_lowercase``).
        remove_punctuation: drop the characters of ``punctuation_marks`` (NeMo's ``rm_punctuation``);
            with ``punctuation_marks`` None, every Unicode punctuation character but the apostrophe.
        separate_punctuation: put spaces around punctuation marks (NeMo's ``separate_punctuation``).
    """

    tokenizer: object = None
    lowercase: bool = False
    remove_punctuation: bool = False
    punctuation_marks: str | None = None
    separate_punctuation: bool = False

    def _is_mark(self, ch: str) -> bool:
        if self.punctuation_marks is not None:
            return ch in self.punctuation_marks
        return ch != "'" and unicodedata.category(ch).startswith("P")

    def __call__(self, text: str) -> str:
        if self.tokenizer is not None:
            text = tokenizer_normalize(self.tokenizer, text)
        if self.lowercase:
            text = text.lower()
        if self.remove_punctuation:
            text = "".join(" " if self._is_mark(ch) else ch for ch in text)
        elif self.separate_punctuation:
            text = "".join(f" {ch} " if self._is_mark(ch) else ch for ch in text)
        return " ".join(text.split())

    def describe(self) -> str:
        """One line saying what is applied."""
        parts = []
        if self.tokenizer is not None:
            parts.append("the tokenizer's (NFKC" + (", lower-cased" if folds_case(self.tokenizer) else ", case kept") + ")")
        if self.lowercase:
            parts.append("lower-cased")
        if self.remove_punctuation:
            marks = "all punctuation but '" if self.punctuation_marks is None else repr(self.punctuation_marks)
            parts.append(f"punctuation removed ({marks})")
        elif self.separate_punctuation:
            parts.append("punctuation separated")
        what = ", ".join(parts) if parts else "none (texts compared as written)"
        return f"text normalisation of reference and hypothesis: {what}"


def unknown_characters(tokenizer, texts: Iterable[str]) -> Counter:
    """Occurrences of each character (after the tokenizer's normalisation) that it encodes as
    ``<unk>``; empty for byte-fallback tokenizers."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(tokenizer_normalize(tokenizer, text).replace(" ", ""))
    unk = tokenizer.unk_id
    bad = Counter()
    for ch, n in counts.items():
        if unk in tokenizer.encode(ch):
            bad[ch] = n
    return bad


def describe_unknown(counts: Counter, limit: int = 20) -> str:
    """``'é' x3, '!' x2`` (most frequent first)."""
    shown = ", ".join(f"{ch!r} x{n}" for ch, n in counts.most_common(limit))
    if len(counts) > limit:
        shown += f", ... ({len(counts) - limit} more characters)"
    return shown
