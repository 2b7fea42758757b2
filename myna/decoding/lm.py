"""ARPA n-gram language models for shallow fusion: a small pure-Python reader and two scorers.

:class:`NgramLM` reads an ARPA file (the format SRILM and KenLM's ``lmplz`` write) into a dict
from word tuples to ``(log_prob, backoff)`` and answers ``log P(word | context)`` with Katz
backoff: if the n-gram ``context + word`` is listed, its probability; otherwise the context's
backoff weight times ``P(word | shorter context)``. ARPA stores log10 values; everything this
module returns is a natural log (ln = log10 * ln 10), the unit the decoders add to.

Beam searches do not talk to :class:`NgramLM` directly but to a *scorer* that maps token ids to
LM words and keeps a hashable state per hypothesis:

- :class:`WordLMScorer` (the default for BPE models): the LM's words are whole words; a
  SentencePiece piece starting with "▁" begins a new word, so the *previous* word is complete
  and is scored when a word-initial piece is emitted, and the last word plus ``</s>`` are
  scored by :meth:`~WordLMScorer.final_score`. Inside a word the LM adds nothing: the fusion
  acts at word boundaries, one word late. This is how a word n-gram trained on ordinary text
  is used with a BPE model without retraining the LM.
- :class:`TokenLMScorer`: the LM's words are the pieces themselves (an n-gram trained on text
  encoded into pieces, as NeMo's ``train_kenlm.py`` does); every token is scored when emitted.

Both share one interface, which the decoders use:

- ``start() -> state``; ``advance(state, token) -> state``;
- ``token_scores(state) -> (V,) float32`` ln LM increment of each next token (cached per state);
- ``final_score(state) -> float`` ln score of ending the utterance here.

>>> lm = NgramLM.from_arpa("lm.arpa")
>>> lm.log_prob("cat", ("<s>", "the"))  # ln P(cat | <s> the)
>>> scorer = WordLMScorer(lm, tokenizer.pieces)
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Hashable, Sequence

import torch

__all__ = ["ArpaError", "NgramLM", "WordLMScorer", "TokenLMScorer", "LN10", "load_lm_scorer"]

LN10 = math.log(10.0)
BOS, EOS, UNK = "<s>", "</s>", "<unk>"

_COUNT_LINE = re.compile(r"^ngram\s+(\d+)\s*=\s*(\d+)$")
_SECTION = re.compile(r"^\\(\d+)-grams:$")


class ArpaError(ValueError):
    """A malformed ARPA file; the message names the file and line."""


class NgramLM:
    """A backoff n-gram model held in a dict (fine for the small LMs of tests and digit tasks;
    a LibriSpeech 4-gram of ~10^8 n-grams wants a compiled reader instead).

    :param ngrams: word tuple -> (ln prob, ln backoff); backoff 0.0 where the file lists none.
    :param order: the highest n.
    :param unk_log_prob: ln probability of a word neither listed nor covered by ``<unk>``
        (default ln 1e-10: strongly penalised, never impossible, so search never dies on it).
    """

    def __init__(self, ngrams: dict[tuple[str, ...], tuple[float, float]], order: int,
                 unk_log_prob: float = -10.0 * LN10):
        if order < 1:
            raise ValueError(f"n-gram order must be >= 1, got {order}")
        self.ngrams = ngrams
        self.order = int(order)
        self.unk_log_prob = float(unk_log_prob)
        unk = ngrams.get((UNK,))
        self._unk = unk[0] if unk is not None else self.unk_log_prob
        self.vocabulary = {key[0] for key in ngrams if len(key) == 1}

    @classmethod
    def from_arpa(cls, path: str | os.PathLike, unk_log_prob: float = -10.0 * LN10) -> "NgramLM":
        """Read an ARPA file (plain text, UTF-8).

        :raises ArpaError: naming file and line for a missing ``\\data\\`` header, a bad count
            line, an entry with the wrong number of fields or a non-numeric value, or a section
            whose entry count differs from the header's.
        """
        path = Path(path)
        if not path.is_file():
            raise ArpaError(f"ARPA file not found: {path}")
        counts: dict[int, int] = {}
        seen: dict[int, int] = {}
        ngrams: dict[tuple[str, ...], tuple[float, float]] = {}
        section = None  # None: before \data\; 0: in \data\; n: in \n-grams:; -1: after \end\
        with open(path, "rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError as err:
                    raise ArpaError(f"{path}:{line_no}: not UTF-8 text (byte {err.start} of the line)") from None
                if not line or section == -1:
                    continue
                where = f"{path}:{line_no}"
                if line == "\\data\\":
                    section = 0
                    continue
                if section is None:
                    continue  # free text before \data\ is allowed by the format
                if line == "\\end\\":
                    section = -1
                    continue
                match = _SECTION.match(line)
                if match:
                    section = int(match.group(1))
                    if section not in counts:
                        raise ArpaError(f"{where}: section \\{section}-grams: not declared in \\data\\")
                    seen[section] = 0
                    continue
                if section == 0:
                    match = _COUNT_LINE.match(line)
                    if not match:
                        raise ArpaError(f"{where}: expected 'ngram N=count' in \\data\\, got {line!r}")
                    counts[int(match.group(1))] = int(match.group(2))
                    continue
                fields = line.split()
                if len(fields) not in (section + 1, section + 2):
                    raise ArpaError(f"{where}: a {section}-gram entry needs {section + 1} or {section + 2} "
                                    f"fields (log10 prob, {section} words, optional backoff), got {line!r}")
                try:
                    log_prob = float(fields[0]) * LN10
                    backoff = float(fields[section + 1]) * LN10 if len(fields) == section + 2 else 0.0
                except ValueError:
                    raise ArpaError(f"{where}: non-numeric probability or backoff in {line!r}") from None
                ngrams[tuple(fields[1:section + 1])] = (log_prob, backoff)
                seen[section] += 1
        if section is None:
            raise ArpaError(f"{path}: no \\data\\ header; not an ARPA file")
        for n, count in counts.items():
            if seen.get(n, 0) != count:
                raise ArpaError(f"{path}: \\data\\ declares {count} {n}-grams but the file lists {seen.get(n, 0)}")
        if not counts:
            raise ArpaError(f"{path}: \\data\\ declares no n-grams")
        return cls(ngrams, max(counts), unk_log_prob)

    def log_prob(self, word: str, context: Sequence[str] = ()) -> float:
        """ln P(word | context) with backoff; only the last ``order - 1`` context words count.

        A word missing from the unigrams is scored as ``<unk>`` (or ``unk_log_prob`` if the
        LM has no ``<unk>``), after the backoff weights of the contexts it fell through.
        """
        context = self.truncate(tuple(context))
        backoff = 0.0
        while True:
            entry = self.ngrams.get(context + (word,))
            if entry is not None:
                return backoff + entry[0]
            if not context:
                return backoff + self._unk
            ctx_entry = self.ngrams.get(context)
            if ctx_entry is not None:
                backoff += ctx_entry[1]
            context = context[1:]

    def sentence_log_prob(self, words: Sequence[str], bos: bool = True, eos: bool = True) -> float:
        """ln P of a word sequence, with ``<s>`` as first context and ``</s>`` scored at the end."""
        context: tuple[str, ...] = (BOS,) if bos else ()
        total = 0.0
        for word in list(words) + ([EOS] if eos else []):
            total += self.log_prob(word, context)
            context = self.truncate(context + (word,))
        return total

    def truncate(self, context: tuple[str, ...]) -> tuple[str, ...]:
        """The last ``order - 1`` words: all the state an n-gram needs."""
        keep = self.order - 1
        return context[max(0, len(context) - keep):] if keep > 0 else ()


class TokenLMScorer:
    """Token-level fusion: the LM's vocabulary is the tokenizer's pieces ("▁the", "ing", ...).

    :param lm: an :class:`NgramLM` over piece strings.
    :param pieces: piece string of each token id 0..V-1 (blank excluded).
    State: the last ``order - 1`` pieces (a tuple).
    """

    def __init__(self, lm: NgramLM, pieces: Sequence[str]):
        self.lm = lm
        self.pieces = list(pieces)
        self._cache: dict[Hashable, torch.Tensor] = {}

    def start(self) -> tuple[str, ...]:
        return self.lm.truncate((BOS,))

    def advance(self, state: tuple[str, ...], token: int) -> tuple[str, ...]:
        return self.lm.truncate(state + (self.pieces[token],))

    def token_scores(self, state: tuple[str, ...]) -> torch.Tensor:
        """(V,) float32: ln P(piece_v | state) for every token v."""
        scores = self._cache.get(state)
        if scores is None:
            scores = torch.tensor([self.lm.log_prob(p, state) for p in self.pieces], dtype=torch.float32)
            self._cache[state] = scores
        return scores

    def final_score(self, state: tuple[str, ...]) -> float:
        return self.lm.log_prob(EOS, state)


class WordLMScorer:
    """Word-level fusion on word-piece tokens: a word is scored once the next word begins.

    :param lm: an :class:`NgramLM` over words.
    :param pieces: piece string of each token id 0..V-1; a piece starting with ``word_start``
        ("▁", SentencePiece's space) opens a word.
    :param word_start: the word-boundary marker.
    State: ``(context, partial)``: the last ``order - 1`` complete words and the text of the word
    being spelled. ``token_scores`` is the same increment, ``ln P(partial | context)``, for every
    word-initial token (0 inside a word or before the first word), so one value per state serves
    the whole vocabulary.
    """

    def __init__(self, lm: NgramLM, pieces: Sequence[str], word_start: str = "▁"):
        self.lm = lm
        self.pieces = list(pieces)
        self.word_start = word_start
        self._starts = torch.tensor([p.startswith(word_start) for p in self.pieces], dtype=torch.bool)
        self._cache: dict[Hashable, torch.Tensor] = {}

    def start(self) -> tuple[tuple[str, ...], str]:
        return self.lm.truncate((BOS,)), ""

    def advance(self, state: tuple[tuple[str, ...], str], token: int) -> tuple[tuple[str, ...], str]:
        context, partial = state
        piece = self.pieces[token]
        if piece.startswith(self.word_start):
            if partial:
                context = self.lm.truncate(context + (partial,))
            return context, piece[len(self.word_start):]
        return context, partial + piece

    def token_scores(self, state: tuple[tuple[str, ...], str]) -> torch.Tensor:
        """(V,) float32: ln P(partial word | context) on word-initial tokens, 0 elsewhere."""
        scores = self._cache.get(state)
        if scores is None:
            context, partial = state
            closing = self.lm.log_prob(partial, context) if partial else 0.0
            scores = torch.where(self._starts, torch.tensor(closing, dtype=torch.float32), torch.tensor(0.0))
            self._cache[state] = scores
        return scores

    def final_score(self, state: tuple[tuple[str, ...], str]) -> float:
        context, partial = state
        total = 0.0
        if partial:
            total += self.lm.log_prob(partial, context)
            context = self.lm.truncate(context + (partial,))
        return total + self.lm.log_prob(EOS, context)


def load_lm_scorer(lm, pieces: Sequence[str], unit: str = "word"):
    """A scorer from an ARPA path, an :class:`NgramLM` or an existing scorer (returned as is).

    :param unit: ``"word"`` (:class:`WordLMScorer`) or ``"token"`` (:class:`TokenLMScorer`).
    """
    if lm is None or hasattr(lm, "token_scores"):
        return lm
    if not isinstance(lm, NgramLM):
        lm = NgramLM.from_arpa(lm)
    if unit == "word":
        return WordLMScorer(lm, pieces)
    if unit == "token":
        return TokenLMScorer(lm, pieces)
    raise ValueError(f"LM unit must be 'word' or 'token', got {unit!r}")
