"""myna.decoding.lm_train and ``myna lm train``: Kneser-Ney ARPA files that myna.decoding.lm reads."""

import json
import math
import random
from collections import Counter, defaultdict

import pytest

from myna.cli import main as cli_main
from myna.decoding.lm import LN10, NgramLM
from myna.decoding.lm_train import train_arpa

pytest.importorskip("kaldingram", reason="LM building needs kaldingram (pip install 'myna[lm]')")

DIGITS = "zero one two three four five six seven eight nine".split()


def _reference_kn_bigram(lines):
    """ln P(w | h) of an interpolation-free (back-off) bigram Kneser-Ney model, SRILM's
    -ukndiscount with no count cut-offs, written out from the formulas: f(hw) = (c(hw) - D) / c(h*),
    D = n1 / (n1 + 2 n2); unigrams are continuation counts N1+(.w) / N1+(..) (no discount);
    bow(h) = (1 - sum_seen f(hw)) / (1 - sum_seen f(w))."""
    bigrams, left = Counter(), defaultdict(set)
    for line in lines:
        words = ["<s>"] + line.split() + ["</s>"]
        for i in range(1, len(words)):
            bigrams[(words[i - 1], words[i])] += 1
            left[words[i]].add(words[i - 1])
    n = Counter(bigrams.values())
    d = n[1] / (n[1] + 2 * n[2])
    total = sum(len(s) for s in left.values())
    unigram = {w: len(s) / total for w, s in left.items()}
    history = Counter()
    for (h, _), c in bigrams.items():
        history[h] += c
    f = {(h, w): (c - d) / history[h] for (h, w), c in bigrams.items()}
    seen = defaultdict(list)
    for h, w in bigrams:
        seen[h].append(w)
    bow = {h: (1 - sum(f[(h, w)] for w in ws)) / (1 - sum(unigram[w] for w in ws)) for h, ws in seen.items()}

    def log_prob(w, h):
        return math.log(f[(h, w)]) if (h, w) in f else math.log(bow.get(h, 1.0) * unigram[w])

    return log_prob, sorted(unigram)


def test_bigram_probabilities_match_the_kneser_ney_formulas(tmp_path):
    lines = ["a b", "a b", "a c", "b c", "c", "b a c", "c c b"]
    train_arpa(lines, tmp_path / "lm.arpa", order=2)
    lm = NgramLM.from_arpa(tmp_path / "lm.arpa")
    reference, vocab = _reference_kn_bigram(lines)
    for h in ["<s>", "a", "b", "c"]:
        for w in vocab:
            assert lm.log_prob(w, (h,)) == pytest.approx(reference(w, h), abs=1e-5), (h, w)


def test_every_context_distribution_sums_to_one(tmp_path):
    rng = random.Random(0)
    lines = [" ".join(rng.choice(DIGITS) for _ in range(rng.randint(1, 5))) for _ in range(400)]
    summary = train_arpa(lines, tmp_path / "lm.arpa", order=3)
    assert summary.texts == 400 and set(summary.ngrams) == {1, 2, 3}
    lm = NgramLM.from_arpa(tmp_path / "lm.arpa")
    words = DIGITS + ["</s>"]
    contexts = [("<s>",), ("<s>", "one"), ("one", "two"), ("nine",), ("seven", "seven"), ("oov", "one")]
    for ctx in contexts:
        assert sum(math.exp(lm.log_prob(w, ctx)) for w in words) == pytest.approx(1.0, abs=1e-5), ctx
    assert lm.sentence_log_prob("one two three".split()) > lm.sentence_log_prob("one two blah".split())


def test_tiny_corpus_caps_the_degenerate_discount_so_seen_ngrams_keep_mass(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="myna.decoding"):
        train_arpa(["one two", "three"], tmp_path / "lm.arpa", order=2)
    assert "no 2-gram occurs exactly twice" in caplog.text
    lm = NgramLM.from_arpa(tmp_path / "lm.arpa")
    assert lm.log_prob("two", ("one",)) > math.log(0.05)  # seen: not the 1e-99 of a zero discount


def test_token_unit_uses_the_tokenizer_pieces_and_word_unit_its_spelling(tmp_path):
    from myna.text import train_sentencepiece

    texts = [" ".join(random.Random(i).choice(DIGITS) for _ in range(3)) for i in range(200)]
    tok = train_sentencepiece(texts, tmp_path / "tok", vocab_size=30)
    train_arpa(texts, tmp_path / "tok.arpa", order=2, unit="token", tokenizer=tok)
    lm = NgramLM.from_arpa(tmp_path / "tok.arpa")
    used = {p for t in texts for p in tok.encode_as_pieces(t)}
    assert lm.vocabulary - {"<s>", "</s>"} == used
    train_arpa(["Three ONE", "one"], tmp_path / "word.arpa", order=1, tokenizer=tok)
    assert NgramLM.from_arpa(tmp_path / "word.arpa").vocabulary == {"<s>", "</s>", "three", "one"}


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no text with any word"):
        train_arpa(["", "   "], tmp_path / "x.arpa")
    with pytest.raises(ValueError, match=r"text 2 contains the reserved ARPA word"):
        train_arpa(["one", "one </s> two"], tmp_path / "x.arpa")
    with pytest.raises(ValueError, match="needs the model's tokenizer"):
        train_arpa(["one"], tmp_path / "x.arpa", unit="token")
    with pytest.raises(ValueError, match="order must be >= 1"):
        train_arpa(["one"], tmp_path / "x.arpa", order=0)
    assert not (tmp_path / "x.arpa").exists()


def test_cli_lm_train_reads_text_and_records_filters_and_writes_arpa(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("one two three\n\nfour five\n")
    records = [{"text": "six seven", "tts_text": "6 7"}, {"text": "one " * 50}]
    (tmp_path / "r.json").write_text("".join(json.dumps(r) + "\n" for r in records))
    code = cli_main(["lm", "train", "--text", str(tmp_path / "t.txt"), "--manifest", str(tmp_path / "r.json"),
                     "--out", str(tmp_path / "lm.arpa"), "--order", "2", "--max-words", "45"])
    out = capsys.readouterr().out
    assert code == 0 and "2-gram word LM from 3 texts" in out and "1 with > 45 words" in out
    assert NgramLM.from_arpa(tmp_path / "lm.arpa").vocabulary >= {"one", "six", "seven", "five"}
    assert cli_main(["lm", "train", "--text", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "y.arpa")]) == 2
    assert "text file not found" in capsys.readouterr().err
