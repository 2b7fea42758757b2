"""Build the ARPA n-gram that beam search fuses (``--lm``), from text.

:func:`train_arpa` estimates a back-off n-gram with Kneser-Ney smoothing and writes it as ARPA,
the format :class:`myna.decoding.lm.NgramLM` reads. The estimator is ``kaldingram`` (optional
extra ``myna[lm]``): the k2/Kaldi team's packaging of Kaldi's ``make_kn_lm.py`` (the builder
icefall's recipes use), which reproduces SRILM's
``ngram-count -kn-modify-counts-at-end -ukndiscount``: one absolute discount per order,
``D = n1 / (n1 + 2 n2)``, continuation counts for the lower orders, back-off weights so every
context's distribution sums to one. Optional entropy pruning (Stolcke) comes from the same
package. One departure: on a corpus so small that no n-gram of some order occurs exactly twice,
that order's discount (1 by the formula, which would list every seen n-gram with probability 0)
is capped at :data:`MAX_DISCOUNT`, with a warning. And one completion: where a context has seen
every word its back-off distribution could give (common with small vocabularies, e.g. digits),
its probabilities are scaled to sum to 1, as SRILM does, instead of leaving that mass unassigned.

Units (what the LM's "words" are; match ``myna evaluate --lm-unit``):

- ``word``: whitespace-separated words. With a tokenizer, each text is first put through
  ``decode(encode(text))``, so the LM sees words exactly as the ASR model spells them (case
  folding, NFKC) and word-level fusion matches the decoder's words;
- ``token``: the tokenizer's pieces (``▁three``), as NeMo's ``train_kenlm.py`` does for token-level
  fusion.

>>> summary = train_arpa(["three one four", "one five"], "lm.arpa", order=3)
>>> print(summary)   # doctest: +SKIP
3-gram word LM from 2 texts (0 empty skipped): 1-grams 7, 2-grams 8, 3-grams 7 -> lm.arpa
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

__all__ = ["ArpaSummary", "train_arpa", "UNITS"]

logger = logging.getLogger("myna.decoding")

UNITS = ("word", "token")
MAX_DISCOUNT = 0.9
PROB_EPSILON = 3e-6  # SRILM's Prob_Epsilon
_COUNT_LINE = re.compile(r"^ngram\s+(\d+)\s*=\s*(\d+)$")


@dataclass
class ArpaSummary:
    """What :func:`train_arpa` wrote.

    Attributes:
        path: the ARPA file.
        order: the highest n.
        unit: "word" or "token".
        texts: texts counted.
        empty: texts skipped because they had no word (counted, not silently dropped).
        ngrams: n -> number of n-grams in the file.
        pruned_with: the entropy-pruning threshold, or None.
    """

    path: Path
    order: int
    unit: str
    texts: int = 0
    empty: int = 0
    ngrams: dict[int, int] = field(default_factory=dict)
    pruned_with: float | None = None

    def __str__(self) -> str:
        counts = ", ".join(f"{n}-grams {c}" for n, c in sorted(self.ngrams.items()))
        pruned = f", pruned at {self.pruned_with:g}" if self.pruned_with else ""
        return (f"{self.order}-gram {self.unit} LM from {self.texts} texts ({self.empty} empty skipped): "
                f"{counts}{pruned} -> {self.path}")


def train_arpa(texts: Iterable[str], out: str | os.PathLike, order: int = 3, unit: str = "word",
               tokenizer: Any = None, prune_threshold: float | None = None) -> ArpaSummary:
    """Estimate a Kneser-Ney back-off n-gram from ``texts`` and write it as ARPA.

    Args:
        texts: one utterance or sentence per item (``<s>`` and ``</s>`` are added around each).
        out: the ARPA file (written to a temporary file, then renamed into place).
        order: n, >= 1.
        unit: "word" or "token" (token needs ``tokenizer``).
        tokenizer: the ASR model's tokenizer (``encode``, ``decode``, ``encode_as_pieces``); for
            "word" it normalises the text as the model spells it.
        prune_threshold: entropy-pruning threshold (relative perplexity increase, e.g. 1e-8);
            None keeps every n-gram.

    Returns:
        an :class:`ArpaSummary` (also logged).

    Raises:
        ValueError: a bad order or unit, "token" without a tokenizer, no usable text, or a word
            containing ARPA's reserved ``<s>``/``</s>``; ImportError naming the extra when
            kaldingram is not installed.
    """
    if order < 1:
        raise ValueError(f"n-gram order must be >= 1, got {order}")
    if unit not in UNITS:
        raise ValueError(f"LM unit must be one of {UNITS}, got {unit!r}")
    if unit == "token" and tokenizer is None:
        raise ValueError("a token-level LM needs the model's tokenizer (its pieces are the LM's words)")
    try:
        from kaldingram.train import NgramCounts
    except ImportError:
        raise ImportError("building an n-gram LM needs kaldingram: pip install 'myna[lm]'") from None
    out = Path(out)
    summary = ArpaSummary(path=out, order=order, unit=unit, pruned_with=prune_threshold)
    counts = NgramCounts(order)
    for text in texts:
        words = _units(text, unit, tokenizer)
        if not words:
            summary.empty += 1
            continue
        reserved = {"<s>", "</s>"} & set(words)
        if reserved:
            raise ValueError(f"text {summary.texts + summary.empty + 1} contains the reserved ARPA word(s) "
                             f"{sorted(reserved)}: {text!r}")
        counts.add_raw_counts_from_line(" ".join(words))
        summary.texts += 1
    if summary.texts == 0:
        raise ValueError(f"no text with any {unit} to build an LM from ({summary.empty} empty)")
    if summary.empty:
        logger.warning("skipped %d empty texts", summary.empty)
    counts.cal_discounting_constants()
    for n, discount in enumerate(counts.d):
        if discount >= 1.0:
            # D = n1 / (n1 + 2 n2) is 1 when no (n+1)-gram occurs exactly twice (a tiny corpus):
            # every seen n-gram would get probability 0 and still be listed, so lookups of it
            # would not back off. Cap it (logged: the estimate is not SRILM's there).
            logger.warning("no %d-gram occurs exactly twice: Kneser-Ney discount %.3f capped at %.2f",
                           n + 1, discount, MAX_DISCOUNT)
            counts.d[n] = MAX_DISCOUNT
    counts.cal_f()
    counts.cal_bow()
    rescaled = _rescale_full_contexts(counts)
    if rescaled:
        logger.info("%d contexts had every continuation seen: their probabilities were scaled to sum to 1 "
                    "(SRILM's rule; the back-off mass had nowhere to go)", rescaled)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            counts.print_as_arpa(fout=f)
        if prune_threshold:
            _prune(tmp, prune_threshold)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    summary.ngrams = _declared_counts(out)
    logger.info("%s", summary)
    return summary


def _rescale_full_contexts(counts: Any) -> int:
    """Back-off weights again, lowest order first, with SRILM's rule for a context whose back-off
    distribution has no mass left (every word the lower order knows was seen in the context):
    its probabilities are scaled to sum to 1 and it gets no back-off weight. kaldingram leaves that
    mass unassigned (the context then sums to less than 1); a rescaled lower order changes the
    higher orders' weights, hence the pass in order.

    Returns the number of contexts scaled.
    """
    scaled = 0
    for k in range(1, counts.ngram_order):
        for history, entry in counts.counts[k].items():
            lower = counts.counts[k - 1][history[1:]]
            numerator = 1.0 - sum(entry.word_to_f.values())
            denominator = 1.0 - sum(lower.word_to_f[w] for w in entry.word_to_count)
            parent = counts.counts[k - 1][history[:-1]].word_to_bow
            if abs(denominator) < PROB_EPSILON and numerator > PROB_EPSILON:
                for w in entry.word_to_f:
                    entry.word_to_f[w] /= 1.0 - numerator
                parent[history[-1]] = None
                scaled += 1
            elif denominator > 0 and numerator > 0:
                parent[history[-1]] = numerator / denominator
            else:
                parent[history[-1]] = None
    return scaled


def _units(text: str, unit: str, tokenizer: Any) -> list[str]:
    if unit == "token":
        return [p for p in tokenizer.encode_as_pieces(text) if p]
    if tokenizer is not None:
        text = tokenizer.decode(tokenizer.encode(text))
    return text.split()


def _prune(path: Path, threshold: float) -> None:
    from kaldingram.prune import ArpaParser, prune

    parser = ArpaParser()
    lm = parser.loadf(str(path), encoding="utf-8")[0]
    prune(lm, threshold, 1)
    parser.dumpf(lm, str(path), encoding="utf-8")


def _declared_counts(path: Path) -> dict[int, int]:
    counts = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\") and line != "\\data\\":
                break
            match = _COUNT_LINE.match(line)
            if match:
                counts[int(match.group(1))] = int(match.group(2))
    return counts
