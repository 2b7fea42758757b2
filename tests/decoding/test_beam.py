"""Transducer beam search: agreement with greedy, exact scores, batching, LM fusion, a known best path."""

import math

import pytest
import torch

from myna.decoding import decode
from myna.decoding.batched_beam import batched_beam_search
from myna.decoding.beam import beam_search, modified_beam_search
from myna.decoding.greedy import transducer_greedy_search
from myna.decoding.lm import NgramLM, TokenLMScorer
from myna.losses.rnnt import transducer_loss
from myna.nn.joint import RNNTJoint
from myna.nn.prediction import RNNTPredictionNetwork


def _random_decoder_joint(vocab=12, seed=0, blank_shift=-1.0):
    torch.manual_seed(seed)
    decoder = RNNTPredictionNetwork(vocab_size=vocab, pred_hidden=16).eval()
    joint = RNNTJoint(encoder_hidden=8, pred_hidden=16, joint_hidden=16, num_classes=vocab).eval()
    with torch.no_grad():
        joint.joint_net[-1].bias[vocab] += blank_shift
    return decoder, joint


def _forced_log_prob(encoded, tokens, decoder, joint, rnnt_type):
    """log P(tokens | encoded) summed over all alignments of the given topology; encoded (1, T, D)."""
    targets = torch.tensor([tokens], dtype=torch.long).reshape(1, len(tokens))
    with torch.no_grad():
        pred, _ = decoder(targets)
        logits = joint(encoded, pred).log_softmax(-1)  # (1, T, U+1, V+1)
        loss = transducer_loss(logits, targets, torch.tensor([encoded.shape[1]]), torch.tensor([len(tokens)]),
                               blank=joint.num_classes_with_blank - 1, reduction="none", rnnt_type=rnnt_type)
    return -float(loss[0])


def test_modified_beam_with_beam_one_equals_greedy_with_one_symbol_per_frame():
    decoder, joint = _random_decoder_joint()
    encoded, lengths = torch.randn(3, 11, 8) * 3, torch.tensor([11, 7, 4])
    greedy = transducer_greedy_search(encoded, lengths, decoder, joint, blank_id=12, max_symbols_per_step=1)
    beam = modified_beam_search(encoded, lengths, decoder, joint, blank_id=12, beam_size=1)
    assert sum(len(h.tokens) for h in greedy) > 0
    for g, nbest in zip(greedy, beam):
        assert len(nbest) == 1
        assert nbest[0].tokens == g.tokens
        assert nbest[0].timestamps == g.timestamps
        assert nbest[0].score == pytest.approx(g.score, abs=1e-4)


def test_modified_beam_scores_are_sorted_and_equal_forced_log_probs():
    # T=3, V=2: 15 label sequences of at most 3 labels; a beam of 32 keeps every one, so each
    # score is the exact log-probability under the modified topology and they sum to 1.
    decoder, joint = _random_decoder_joint(vocab=2, blank_shift=0.0)
    encoded = torch.randn(1, 3, 8)
    nbest = modified_beam_search(encoded, torch.tensor([3]), decoder, joint, blank_id=2, beam_size=32,
                                 score_norm=False)[0]
    assert len(nbest) == 15
    scores = [h.score for h in nbest]
    assert scores == sorted(scores, reverse=True)
    for hyp in nbest:
        assert hyp.score == pytest.approx(_forced_log_prob(encoded, hyp.tokens, decoder, joint, "modified"), abs=1e-4)
    assert math.fsum(math.exp(s) for s in scores) == pytest.approx(1.0, abs=1e-4)


def test_alsd_scores_are_sorted_and_equal_forced_log_probs():
    # T=3: ALSD allows at most T-1 = 2 labels; every sequence of <= 2 labels of V=2 survives a
    # beam of 16, and merging equal prefixes makes each score the full RNN-T log-probability.
    decoder, joint = _random_decoder_joint(vocab=2, blank_shift=0.0)
    encoded = torch.randn(1, 3, 8)
    nbest = beam_search(encoded, torch.tensor([3]), decoder, joint, blank_id=2, beam_size=16,
                        score_norm=False, nbest=16)[0]
    assert sorted(tuple(h.tokens) for h in nbest) == sorted(
        [(), (0,), (1,), (0, 0), (0, 1), (1, 0), (1, 1)])
    scores = [h.score for h in nbest]
    assert scores == sorted(scores, reverse=True)
    for hyp in nbest:
        assert hyp.score == pytest.approx(_forced_log_prob(encoded, hyp.tokens, decoder, joint, "regular"), abs=1e-4)


def test_batched_beam_scores_are_exact_rnnt_log_probs_and_allow_several_labels_per_frame():
    # T=2, V=2, at most 2 labels per frame: a beam of 64 keeps every hypothesis, and every
    # sequence of <= 2 labels has all its alignments inside the cap, so its score is the exact
    # regular-topology log-probability; 2 labels on one frame are possible.
    decoder, joint = _random_decoder_joint(vocab=2, blank_shift=-2.0)
    encoded = torch.randn(1, 2, 8)
    nbest = batched_beam_search(encoded, torch.tensor([2]), decoder, joint, blank_id=2, beam_size=64,
                                max_symbols_per_step=2, score_norm=False, nbest=64)[0]
    short = [h for h in nbest if len(h.tokens) <= 2]
    assert sorted(tuple(h.tokens) for h in short) == sorted(
        [(), (0,), (1,), (0, 0), (0, 1), (1, 0), (1, 1)])
    assert max(len(h.tokens) for h in nbest) == 4  # 4 labels in 2 frames: 2 on each
    scores = [h.score for h in nbest]
    assert scores == sorted(scores, reverse=True)
    for hyp in short:
        assert hyp.score == pytest.approx(_forced_log_prob(encoded, hyp.tokens, decoder, joint, "regular"), abs=1e-4)


def test_batched_beam_with_beam_one_equals_greedy():
    decoder, joint = _random_decoder_joint()
    encoded, lengths = torch.randn(3, 11, 8) * 3, torch.tensor([11, 7, 0])
    greedy = transducer_greedy_search(encoded, lengths, decoder, joint, blank_id=12, max_symbols_per_step=3)
    beam = batched_beam_search(encoded, lengths, decoder, joint, blank_id=12, beam_size=1, max_symbols_per_step=3)
    assert sum(len(h.tokens) for h in greedy) > 0
    for g, nbest in zip(greedy, beam):
        assert nbest[0].tokens == g.tokens
        assert nbest[0].timestamps == g.timestamps
        assert nbest[0].confidences == pytest.approx(g.confidences, abs=1e-5)
        if all(g.timestamps.count(t) < 3 for t in g.timestamps):  # at the cap, beam search adds blank's score
            assert nbest[0].score == pytest.approx(g.score, abs=1e-4)


def test_score_norm_ranks_by_score_per_label():
    decoder, joint = _random_decoder_joint()
    nbest = beam_search(torch.randn(1, 8, 8) * 3, torch.tensor([8]), decoder, joint, blank_id=12, beam_size=4)[0]
    keys = [h.score / (len(h.tokens) + 1) for h in nbest]
    assert keys == sorted(keys, reverse=True)


@pytest.mark.parametrize("search", [modified_beam_search, beam_search, batched_beam_search])
def test_batched_results_equal_one_by_one_results(search):
    decoder, joint = _random_decoder_joint()
    encoded, lengths = torch.randn(4, 9, 8) * 3, torch.tensor([9, 3, 6, 1])
    batched = search(encoded, lengths, decoder, joint, blank_id=12, beam_size=3)
    assert sum(len(n[0].tokens) for n in batched) > 0
    for b in range(4):
        single = search(encoded[b:b + 1, : lengths[b]], lengths[b:b + 1], decoder, joint, blank_id=12, beam_size=3)[0]
        assert [h.tokens for h in batched[b]] == [h.tokens for h in single]
        assert [h.score for h in batched[b]] == pytest.approx([h.score for h in single], abs=1e-4)


def _token_lm(tmp_path, pieces, log10_probs):
    lines = ["\\data\\", f"ngram 1={len(pieces) + 2}", "", "\\1-grams:", "-99 <s>", "-1.0 </s>"]
    lines += [f"{p:.4f} {w}" for w, p in zip(pieces, log10_probs)]
    path = tmp_path / "tokens.arpa"
    path.write_text("\n".join(lines + ["", "\\end\\", ""]), encoding="utf-8")
    return TokenLMScorer(NgramLM.from_arpa(path), pieces)


@pytest.mark.parametrize("search", [modified_beam_search, beam_search, batched_beam_search])
def test_lm_with_weight_zero_changes_nothing(tmp_path, search):
    decoder, joint = _random_decoder_joint()
    pieces = [f"▁t{i}" for i in range(12)]
    lm = _token_lm(tmp_path, pieces, [-0.3 - 0.2 * i for i in range(12)])
    encoded, lengths = torch.randn(2, 7, 8) * 3, torch.tensor([7, 5])
    plain = search(encoded, lengths, decoder, joint, blank_id=12, beam_size=4)
    fused = search(encoded, lengths, decoder, joint, blank_id=12, beam_size=4, lm=lm, lm_weight=0.0)
    for a, b in zip(plain, fused):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
        assert all(h.lm_score < 0 for h in b)  # the LM was consulted


class _LastTokenPrediction(torch.nn.Module):
    """Toy prediction network whose output is the one-hot of the last label (start: index 0)."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def initial_state(self, batch, device=None, dtype=None):
        return (torch.zeros(1, batch, 1),)

    def step(self, tokens, state):
        batch = state[0].shape[1]
        index = torch.zeros(batch, dtype=torch.long) if tokens is None else (tokens + 1).clamp(max=self.vocab)
        return torch.nn.functional.one_hot(index, self.vocab + 1).float(), state  # (B, V+1); blank: unused


class _TableJoint(torch.nn.Module):
    """Toy joiner: probabilities looked up in a (T, V+1 contexts, V+1 classes) table."""

    def __init__(self, table):
        super().__init__()
        self.log_table = table.log()
        self.num_classes_with_blank = table.shape[-1]

    def project_encoder(self, encoder_out):  # (B, T, T) one-hot frame index
        return encoder_out

    def project_prediction(self, pred_out):
        return pred_out

    def joint_after_projection(self, f, g):  # f (N, T), g (N, V+1) one-hots
        return torch.einsum("nt,nc,tck->nk", f, g, self.log_table)


def _toy_model():
    # Labels a=0, b=1, blank=2; contexts: start, after a, after b. Frame 0 prefers "a" (0.6 vs 0.4),
    # but after "a" everything is uncertain while after "b" blank is near-certain, so the best
    # sequence is "b" (~0.39) although greedy picks "a" (~0.2 or less).
    frame = torch.tensor([[0.6, 0.4, 1e-6], [0.33, 0.33, 0.34], [0.005, 0.005, 0.99]])
    later = torch.tensor([[0.1, 0.1, 0.8], [0.33, 0.33, 0.34], [0.005, 0.005, 0.99]])
    table = torch.stack([frame, later])  # (T=2, 3 contexts, 3 classes)
    encoded = torch.eye(2).unsqueeze(0)  # (1, T=2, 2): frame t is one-hot(t)
    return _LastTokenPrediction(2), _TableJoint(table), encoded


@pytest.mark.parametrize("search,greedy_symbols", [(modified_beam_search, 1), (beam_search, 10),
                                                   (batched_beam_search, 10)])
def test_toy_model_beam_finds_the_best_path_greedy_misses(search, greedy_symbols):
    decoder, joint, encoded = _toy_model()
    lengths = torch.tensor([2])
    greedy = transducer_greedy_search(encoded, lengths, decoder, joint, blank_id=2, max_symbols_per_step=greedy_symbols)
    assert greedy[0].tokens == [0]
    best = search(encoded, lengths, decoder, joint, blank_id=2, beam_size=2, score_norm=False)[0][0]
    assert best.tokens == [1]
    assert best.timestamps == [0]
    assert best.confidences == pytest.approx([0.4], abs=1e-5)


@pytest.mark.parametrize("search", [modified_beam_search, beam_search, batched_beam_search])
def test_lm_fusion_pulls_the_result_toward_the_lm(tmp_path, search):
    decoder, joint, encoded = _toy_model()
    lm = _token_lm(tmp_path, ["▁a", "▁b"], [math.log10(0.99), math.log10(0.01)])
    kwargs = dict(blank_id=2, beam_size=2, score_norm=False)
    assert search(encoded, torch.tensor([2]), decoder, joint, lm=lm, lm_weight=0.0, **kwargs)[0][0].tokens == [1]
    fused = search(encoded, torch.tensor([2]), decoder, joint, lm=lm, lm_weight=1.0, **kwargs)[0][0]
    assert fused.tokens == [0]
    assert fused.lm_score == pytest.approx(math.log(0.99) + math.log(0.1), abs=1e-4)
    assert fused.score == pytest.approx(fused.am_score + fused.lm_score, abs=1e-6)


class _ToyModel(torch.nn.Module):
    """The smallest model that says how it decodes (myna.decoding.DecodableModel): a Transducer."""

    decoding_strategies = ("greedy", "modified_beam", "beam", "alsd")

    def __init__(self):
        super().__init__()
        self.prediction, self.joiner = _random_decoder_joint()
        self.blank_id = 12
        self.max_symbols_per_step = 10
        self.tokenizer = None

    def transducer_parts(self):
        return self.prediction, self.joiner


@pytest.mark.parametrize("strategy", ["greedy", "greedy_batch", "modified_beam", "beam", "alsd"])
def test_decode_dispatches_every_strategy(strategy):
    model = _ToyModel()
    encoded, lengths = torch.randn(2, 6, 8) * 3, torch.tensor([6, 4])
    hyps = decode(model, encoded, lengths, strategy=strategy, beam_size=2)
    assert len(hyps) == 2 and all(isinstance(t, int) for h in hyps for t in h.tokens)


def test_decode_rejects_unknown_strategy_and_lm_with_greedy():
    model = _ToyModel()
    with pytest.raises(ValueError, match="'tsd'"):
        decode(model, torch.randn(1, 2, 8), torch.tensor([2]), strategy="tsd")
    with pytest.raises(ValueError, match="beam strategy"):
        decode(model, torch.randn(1, 2, 8), torch.tensor([2]), strategy="greedy", lm="x.arpa")
