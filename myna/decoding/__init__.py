"""myna.decoding: greedy and beam search for Transducer and CTC models, n-gram shallow fusion.

Functions over tensors (encoder output (B, T, D) and lengths (B,)) with the model's prediction
network and joiner passed in; :func:`decode` picks one by name for a model:

- ``"greedy"`` (NeMo: ``greedy_batch``): :func:`transducer_greedy_search`, batched;
- ``"modified_beam"``: :func:`modified_beam_search`, at most one label per frame, batched;
- ``"beam"`` (NeMo: ``alsd``): :func:`beam_search`, several labels per frame;
- ``"ctc_greedy"`` / ``"ctc_beam"``: the CTC head of a hybrid model.

>>> hyps = decode(model, encoded, encoded_lengths, strategy="modified_beam", beam_size=4,
...               lm="lm.arpa", lm_weight=0.3)
>>> hyps[0].text, hyps[0].score
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from myna.decoding.beam import BeamHypothesis, beam_search, modified_beam_search
from myna.decoding.ctc_beam import ctc_prefix_beam_search
from myna.decoding.greedy import Hypothesis, ctc_greedy_search, transducer_greedy_search
from myna.decoding.lm import NgramLM, TokenLMScorer, WordLMScorer, load_lm_scorer

__all__ = [
    "STRATEGIES", "Hypothesis", "BeamHypothesis", "decode", "transducer_greedy_search", "ctc_greedy_search",
    "modified_beam_search", "beam_search", "ctc_prefix_beam_search", "NgramLM", "WordLMScorer",
    "TokenLMScorer", "load_lm_scorer",
]

STRATEGIES = ("greedy", "modified_beam", "beam", "ctc_greedy", "ctc_beam")
_ALIASES = {"greedy_batch": "greedy", "alsd": "beam"}


def decode(
    model: torch.nn.Module,
    encoded: torch.Tensor,
    lengths: torch.Tensor,
    strategy: str = "greedy",
    beam_size: int = 4,
    lm: Optional[Any] = None,
    lm_weight: float = 0.0,
    lm_unit: str = "word",
    score_norm: bool = True,
    max_symbols_per_step: Optional[int] = None,
    alsd_max_target_len: float | int = 1.0,
    return_nbest: bool = False,
) -> list[Hypothesis] | list[list[BeamHypothesis]]:
    """Decode encoder output with the strategy named; fills ``text`` when the model has a tokenizer.

    Args:
        model: a :class:`~myna.models.transducer.TransducerModel` (``decoder``, ``joint``,
            ``blank_id``, optional ``ctc_decoder`` and ``tokenizer``).
        encoded: (B, T, D) float encoder output; lengths: (B,) int64 valid frames.
        strategy: one of :data:`STRATEGIES` (NeMo's ``greedy_batch`` and ``alsd`` accepted).
        beam_size: beam width of the beam strategies.
        lm: ARPA path, :class:`NgramLM` or scorer for shallow fusion (beam strategies only).
        lm_weight: fusion weight; lm_unit: ``"word"`` (n-gram over words, applied at "▁" word
            boundaries) or ``"token"`` (n-gram over the tokenizer's pieces); see :mod:`myna.decoding.lm`.
        score_norm: NeMo's length normalisation of the final ranking (Transducer beams).
        max_symbols_per_step: greedy cap of labels per frame (default: the model's).
        alsd_max_target_len: label cap of ``"beam"`` (int, or fraction of the frames).
        return_nbest: return the n-best lists of the beam strategies instead of the best.

    Returns:
        B hypotheses (or B n-best lists with ``return_nbest`` for beam strategies).
    """
    strategy = _ALIASES.get(strategy, strategy)
    if strategy not in STRATEGIES:
        raise ValueError(f"decoding strategy {strategy!r} is not supported; choose one of {list(STRATEGIES)}")
    scorer = None
    if lm is not None:
        if strategy in ("greedy", "ctc_greedy"):
            raise ValueError(f"an LM needs a beam strategy, not {strategy!r}")
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None and not hasattr(lm, "token_scores"):
            raise ValueError("LM fusion needs the model's tokenizer to map tokens to LM words")
        scorer = load_lm_scorer(lm, tokenizer.pieces if tokenizer is not None else [], lm_unit)
    blank = model.blank_id
    nbest: list[list[BeamHypothesis]]
    if strategy == "greedy":
        cap = max_symbols_per_step or getattr(model, "max_symbols_per_step", 10)
        return _attach_text(model, transducer_greedy_search(encoded, lengths, model.decoder, model.joint, blank, cap))
    if strategy == "ctc_greedy" or strategy == "ctc_beam":
        if getattr(model, "ctc_decoder", None) is None:
            raise ValueError(f"strategy {strategy!r} needs a model with a CTC head")
        log_probs = model.ctc_decoder(encoded)  # (B, T, V+1)
        if strategy == "ctc_greedy":
            return _attach_text(model, ctc_greedy_search(log_probs, lengths, blank))
        nbest = ctc_prefix_beam_search(log_probs, lengths, blank, beam_size, lm=scorer, lm_weight=lm_weight,
                                       token_beam=max(2 * beam_size, 8))
    elif strategy == "modified_beam":
        nbest = modified_beam_search(encoded, lengths, model.decoder, model.joint, blank, beam_size, lm=scorer,
                                     lm_weight=lm_weight, score_norm=score_norm)
    else:
        nbest = beam_search(encoded, lengths, model.decoder, model.joint, blank, beam_size,
                            alsd_max_target_len=alsd_max_target_len, lm=scorer, lm_weight=lm_weight,
                            score_norm=score_norm)
    for hyps in nbest:
        _attach_text(model, hyps)
    if return_nbest:
        return nbest
    return [hyps[0] if hyps else BeamHypothesis() for hyps in nbest]


def _attach_text(model, hyps: list) -> list:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        for hyp in hyps:
            hyp.text = tokenizer.decode(hyp.tokens)
    return hyps
