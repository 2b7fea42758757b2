"""myna.decoding: greedy and beam search for Transducer and CTC models, n-gram shallow fusion.

Functions over tensors (encoder output (B, T, D) and lengths (B,)) with the model's prediction
network and joiner, or its CTC log-probs, passed in; :func:`decode` picks one by name for a
model that says how it decodes (:class:`DecodableModel`):

- ``"greedy"`` (NeMo: ``greedy_batch``): :func:`transducer_greedy_search`, batched;
- ``"beam"`` (NeMo: ``malsd_batch``): :func:`batched_beam_search`, ALSD on (B, beam) tensors,
  several labels per frame, all utterances of the batch at once: the beam search to use;
- ``"modified_beam"``: :func:`modified_beam_search`, at most ONE label per frame, batched. It is
  for models trained with that constraint (the "modified" topology of k2/icefall's pruned loss,
  ``rnnt_type="modified"``); on a model trained on the regular topology it drops the extra
  labels and can score worse than greedy search;
- ``"alsd"`` (NeMo: ``beam`` with ``search_type="alsd"``): :func:`beam_search`, the same ALSD
  one utterance at a time (at most T-1 labels), kept as the reference the batched one is checked
  against;
- ``"ctc_greedy"`` / ``"ctc_beam"``: best path / prefix beam search over the CTC head (a CTC
  model's only head, or a hybrid model's auxiliary one). For a model without a Transducer,
  ``"greedy"`` and ``"beam"`` mean these, as NeMo's CTC models name them.

>>> hyps = decode(model, encoded, encoded_lengths, strategy="modified_beam", beam_size=4,
...               lm="lm.arpa", lm_weight=0.3)
>>> hyps[0].text, hyps[0].score
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, Sequence

import torch

from myna.decoding.batched_beam import batched_beam_search
from myna.decoding.beam import BeamHypothesis, beam_search, modified_beam_search
from myna.decoding.ctc_beam import ctc_prefix_beam_search
from myna.decoding.greedy import Hypothesis, ctc_greedy_search, transducer_greedy_search
from myna.decoding.lm import NgramLM, TokenLMScorer, WordLMScorer, load_lm_scorer

__all__ = [
    "STRATEGIES", "TRANSDUCER_STRATEGIES", "CTC_STRATEGIES", "DecodableModel", "resolve_strategy", "Hypothesis", "BeamHypothesis", "decode", "transducer_greedy_search", "ctc_greedy_search",
    "modified_beam_search", "beam_search", "batched_beam_search", "ctc_prefix_beam_search", "NgramLM", "WordLMScorer",
    "TokenLMScorer", "load_lm_scorer",
]

TRANSDUCER_STRATEGIES = ("greedy", "modified_beam", "beam", "alsd")
CTC_STRATEGIES = ("ctc_greedy", "ctc_beam")
STRATEGIES = TRANSDUCER_STRATEGIES + CTC_STRATEGIES
_ALIASES = {"greedy_batch": "greedy", "malsd_batch": "beam"}


class DecodableModel(Protocol):
    """What :func:`decode` needs from a model: the strategies it can run and the parts they use.

    ``decoding_strategies`` lists the model's strategies (a subset of :data:`STRATEGIES`); a
    model implements ``transducer_parts`` when it lists a Transducer strategy and
    ``ctc_log_probs`` when it lists a CTC one. ``blank_id`` is the blank class (the last; a
Hugging Face character vocabulary's ``<pad>``, id 0, in CTC models read from HF folders);
    ``tokenizer`` (``decode(ids)``, ``pieces``) fills ``text`` and maps LM words, or is None;
    ``max_symbols_per_step`` (Transducers) caps greedy labels per frame.
    """

    blank_id: int
    tokenizer: Any
    max_symbols_per_step: int

    @property
    def decoding_strategies(self) -> tuple[str, ...]: ...

    def transducer_parts(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(prediction network, joint) with the step API of :mod:`myna.decoding.greedy`."""
        ...

    def ctc_log_probs(self, encoded: torch.Tensor) -> torch.Tensor:
        """(B, T, D) encoder output -> (B, T, C) float CTC log-probabilities (C classes, blank_id among them)."""
        ...


def resolve_strategy(model: DecodableModel, strategy: str) -> str:
    """The canonical name of ``strategy`` for ``model``.

    NeMo's names map to myna's (``greedy_batch`` -> ``greedy``, ``malsd_batch`` -> ``beam``); for a
    model without a Transducer, ``greedy`` / ``beam`` mean ``ctc_greedy`` / ``ctc_beam``.

    Raises:
        ValueError: naming the strategy and listing the ones the model can run.
    """
    supported: Sequence[str] = model.decoding_strategies
    name = _ALIASES.get(strategy, strategy)
    if name not in supported and not any(s in supported for s in TRANSDUCER_STRATEGIES):
        name = {"greedy": "ctc_greedy", "beam": "ctc_beam"}.get(name, name)
    if name not in supported:
        raise ValueError(f"decoding strategy {strategy!r} is not supported by {type(model).__name__}; "
                         f"it can run {list(supported)}")
    return name


@torch.inference_mode()
def decode(
    model: DecodableModel,
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
        model: a :class:`DecodableModel` (any myna model: Transducer, hybrid, CTC).
        encoded: (B, T, D) float encoder output; lengths: (B,) int64 valid frames.
        strategy: one of the model's ``decoding_strategies`` (see :func:`resolve_strategy`).
        beam_size: beam width of the beam strategies.
        lm: ARPA path, :class:`NgramLM` or scorer for shallow fusion (beam strategies only).
        lm_weight: fusion weight; lm_unit: ``"word"`` (n-gram over words, applied at "▁" word
            boundaries) or ``"token"`` (n-gram over the tokenizer's pieces); see :mod:`myna.decoding.lm`.
        score_norm: NeMo's length normalisation of the final ranking (Transducer beams).
        max_symbols_per_step: greedy cap of labels per frame (default: the model's).
        max_symbols_per_step: also the labels-per-frame cap of ``"beam"``.
        alsd_max_target_len: label cap of ``"alsd"`` (int, or fraction of the frames).
        return_nbest: return the n-best lists of the beam strategies instead of the best.

    Returns:
        B hypotheses (or B n-best lists with ``return_nbest`` for beam strategies).

    Raises:
        ValueError: a strategy the model cannot run (the message lists those it can), or an LM
            with a greedy strategy.
    """
    strategy = resolve_strategy(model, strategy)
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
    if strategy in CTC_STRATEGIES:
        log_probs = model.ctc_log_probs(encoded)  # (B, T, V+1)
        if strategy == "ctc_greedy":
            return _attach_text(model, ctc_greedy_search(log_probs, lengths, blank))
        nbest = ctc_prefix_beam_search(log_probs, lengths, blank, beam_size, lm=scorer, lm_weight=lm_weight,
                                       token_beam=max(2 * beam_size, 8))
    else:
        prediction_net, joint = model.transducer_parts()
        if strategy == "greedy":
            cap = max_symbols_per_step or model.max_symbols_per_step
            return _attach_text(model, transducer_greedy_search(encoded, lengths, prediction_net, joint, blank, cap))
        if strategy == "beam":
            nbest = batched_beam_search(encoded, lengths, prediction_net, joint, blank, beam_size,
                                        max_symbols_per_step=max_symbols_per_step or model.max_symbols_per_step,
                                        lm=scorer, lm_weight=lm_weight, score_norm=score_norm)
        elif strategy == "modified_beam":
            nbest = modified_beam_search(encoded, lengths, prediction_net, joint, blank, beam_size, lm=scorer,
                                         lm_weight=lm_weight, score_norm=score_norm)
        else:
            nbest = beam_search(encoded, lengths, prediction_net, joint, blank, beam_size,
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
