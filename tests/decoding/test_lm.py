"""ARPA reading and backoff scoring against hand-computed values; word- and token-level scorers."""

import math

import pytest

from myna.decoding.lm import LN10, ArpaError, NgramLM, TokenLMScorer, WordLMScorer, load_lm_scorer

TINY_ARPA = """Some free text before the header is allowed.

\\data\\
ngram 1=5
ngram 2=4
ngram 3=1

\\1-grams:
-99 <s> -0.5
-0.7 the -0.3
-0.9 cat -0.2
-1.2 </s>
-2.0 <unk>

\\2-grams:
-0.2 <s> the
-0.4 the cat -0.15
-0.1 cat </s>
-0.6\tthe the

\\3-grams:
-0.05 <s> the cat

\\end\\
"""


@pytest.fixture
def tiny_lm(tmp_path):
    path = tmp_path / "tiny.arpa"
    path.write_text(TINY_ARPA, encoding="utf-8")
    return NgramLM.from_arpa(path)


@pytest.mark.parametrize("word,context,log10", [
    ("the", ("<s>",), -0.2),  # listed bigram
    ("cat", ("<s>", "the"), -0.05),  # listed trigram
    ("cat", ("<s>",), -0.5 - 0.9),  # bo(<s>) + P(cat)
    ("</s>", ("the", "cat"), -0.15 - 0.1),  # bo(the cat) + P(</s> | cat)
    ("the", ("the", "cat"), -0.15 - 0.2 - 0.7),  # bo(the cat) + bo(cat) + P(the)
    ("dog", ("the",), -0.3 - 2.0),  # unknown word: bo(the) + P(<unk>)
    ("cat", ("x", "y", "<s>", "the"), -0.05),  # only the last order-1 words count
    ("the", (), -0.7),
])
def test_log_prob_backs_off_like_hand_computed_values(tiny_lm, word, context, log10):
    assert tiny_lm.order == 3
    assert tiny_lm.log_prob(word, context) == pytest.approx(log10 * LN10, abs=1e-9)


def test_sentence_log_prob_adds_sentence_start_and_end(tiny_lm):
    # P(the | <s>) P(cat | <s> the) P(</s> | the cat)
    want = (-0.2 - 0.05 + (-0.15 - 0.1)) * LN10
    assert tiny_lm.sentence_log_prob(["the", "cat"]) == pytest.approx(want, abs=1e-9)


def test_lm_without_unk_scores_unknown_words_with_the_floor(tmp_path):
    path = tmp_path / "nounk.arpa"
    path.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-0.5 a\n-0.5 </s>\n\\end\\\n", encoding="utf-8")
    lm = NgramLM.from_arpa(path, unk_log_prob=-7.0)
    assert lm.log_prob("zzz", ("a",)) == -7.0


@pytest.mark.parametrize("text,message", [
    ("\\1-grams:\n-1 a\n", "no \\\\data\\\\ header"),
    ("\\data\\\nngram 1=2\n\\1-grams:\n-1 a\n\\end\\\n", "declares 2 1-grams but the file lists 1"),
    ("\\data\\\nngram 1=1\n\\1-grams:\nabc a\n\\end\\\n", r"bad.arpa:4: non-numeric"),
    ("\\data\\\nngram 1=1\n\\1-grams:\n-1 a b c\n\\end\\\n", r"bad.arpa:4: a 1-gram entry needs"),
    ("\\data\\\nngram one\n", r"bad.arpa:2: expected 'ngram N=count'"),
])
def test_malformed_arpa_is_an_error_naming_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.arpa"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ArpaError, match=message):
        NgramLM.from_arpa(path)


def test_word_scorer_on_pieces_equals_the_sentence_log_prob(tiny_lm):
    pieces = ["▁the", "▁c", "at", "▁"]
    scorer = WordLMScorer(tiny_lm, pieces)
    state, total = scorer.start(), 0.0
    for token in [0, 1, 2]:  # "▁the ▁c at" = "the cat"
        total += float(scorer.token_scores(state)[token])
        state = scorer.advance(state, token)
    total += scorer.final_score(state)
    assert total == pytest.approx(tiny_lm.sentence_log_prob(["the", "cat"]), abs=1e-5)
    # Inside a word nothing is added; at a word start the finished word is scored.
    inside = scorer.token_scores(scorer.advance(scorer.start(), 1))
    assert float(inside[2]) == 0.0 and float(inside[0]) == pytest.approx(tiny_lm.log_prob("c", ("<s>",)), abs=1e-5)


def test_token_scorer_scores_every_piece(tiny_lm):
    scorer = TokenLMScorer(tiny_lm, ["the", "cat"])
    scores = scorer.token_scores(scorer.start())
    assert scores.tolist() == pytest.approx([-0.2 * LN10, (-0.5 - 0.9) * LN10], abs=1e-5)
    state = scorer.advance(scorer.advance(scorer.start(), 0), 1)
    assert scorer.final_score(state) == pytest.approx(tiny_lm.log_prob("</s>", ("the", "cat")), abs=1e-9)


def test_load_lm_scorer_reads_paths_and_passes_scorers_through(tmp_path, tiny_lm):
    path = tmp_path / "tiny.arpa"
    path.write_text(TINY_ARPA, encoding="utf-8")
    assert isinstance(load_lm_scorer(str(path), ["▁the"]), WordLMScorer)
    assert isinstance(load_lm_scorer(tiny_lm, ["▁the"], unit="token"), TokenLMScorer)
    scorer = WordLMScorer(tiny_lm, ["▁the"])
    assert load_lm_scorer(scorer, []) is scorer
    with pytest.raises(ValueError, match="'char'"):
        load_lm_scorer(tiny_lm, [], unit="char")
    assert math.isfinite(scorer.final_score(scorer.start()))
