"""CTC prefix beam search: exact prefix probabilities, a known best path, LM weight 0."""

import math

import pytest
import torch
import torch.nn.functional as F

from myna.decoding.ctc_beam import ctc_prefix_beam_search
from myna.decoding.greedy import ctc_greedy_search
from myna.decoding.lm import NgramLM, TokenLMScorer


def _ctc_log_prob(log_probs, tokens):
    """log P(tokens | log_probs (T, C)) by torch's CTC loss (blank = C - 1)."""
    targets = torch.tensor([tokens], dtype=torch.long).reshape(1, len(tokens))
    loss = F.ctc_loss(log_probs.unsqueeze(1), targets, torch.tensor([log_probs.shape[0]]),
                      torch.tensor([len(tokens)]), blank=log_probs.shape[1] - 1, reduction="none")
    return -float(loss[0])


def test_scores_with_an_unpruned_beam_are_exact_ctc_log_probs():
    torch.manual_seed(0)
    log_probs = torch.randn(1, 3, 3).log_softmax(-1)  # T=3, labels 0, 1, blank 2
    nbest = ctc_prefix_beam_search(log_probs, torch.tensor([3]), blank_id=2, beam_size=64, nbest=64)[0]
    scores = [h.score for h in nbest]
    assert scores == sorted(scores, reverse=True)
    for hyp in nbest:
        assert hyp.score == pytest.approx(_ctc_log_prob(log_probs[0], hyp.tokens), abs=1e-5)
    assert math.fsum(math.exp(s) for s in scores) == pytest.approx(1.0, abs=1e-5)
    assert (0, 0, 0) not in {tuple(h.tokens) for h in nbest}  # needs 5 frames


def test_prefix_search_finds_the_sequence_best_path_decoding_misses():
    # Two frames of P(a)=0.4, P(blank)=0.6: best path is "" (0.36) but "a" has 0.64.
    log_probs = torch.tensor([[[0.4, 0.6], [0.4, 0.6]]]).log()
    assert ctc_greedy_search(log_probs, torch.tensor([2]), blank_id=1)[0].tokens == []
    best = ctc_prefix_beam_search(log_probs, torch.tensor([2]), blank_id=1, beam_size=2)[0][0]
    assert best.tokens == [0]
    assert best.score == pytest.approx(math.log(0.64), abs=1e-6)


def test_lm_with_weight_zero_changes_nothing(tmp_path):
    torch.manual_seed(1)
    log_probs = (torch.randn(2, 8, 6) * 2).log_softmax(-1)
    arpa = tmp_path / "lm.arpa"
    arpa.write_text("\\data\\\nngram 1=7\n\n\\1-grams:\n-99 <s>\n-1 </s>\n" + "".join(
        f"-{0.2 * (i + 1):.1f} p{i}\n" for i in range(5)) + "\n\\end\\\n", encoding="utf-8")
    lm = TokenLMScorer(NgramLM.from_arpa(arpa), [f"p{i}" for i in range(5)])
    lengths = torch.tensor([8, 5])
    plain = ctc_prefix_beam_search(log_probs, lengths, blank_id=5, beam_size=4)
    fused = ctc_prefix_beam_search(log_probs, lengths, blank_id=5, beam_size=4, lm=lm, lm_weight=0.0)
    for a, b in zip(plain, fused):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b])
    strong = ctc_prefix_beam_search(log_probs, lengths, blank_id=5, beam_size=4, lm=lm, lm_weight=5.0)
    assert all(h[0].lm_score <= 0 for h in strong)


def test_token_beam_prunes_labels_but_keeps_the_clear_winner():
    log_probs = torch.tensor([[[0.9, 0.05, 0.05], [0.05, 0.05, 0.9], [0.05, 0.9, 0.05]]]).log()
    best = ctc_prefix_beam_search(log_probs, torch.tensor([3]), blank_id=2, beam_size=2, token_beam=1)[0][0]
    assert best.tokens == [0, 1] and best.timestamps == [0, 2]
