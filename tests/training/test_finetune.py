"""Fine-tuning: init from checkpoints with filters and reports, change of vocabulary."""

import numpy as np
import pytest
import torch

import myna
from myna.training.finetune import change_vocabulary, filter_state_dict, init_from_checkpoint
from myna.text import train_sentencepiece


@pytest.fixture(scope="module")
def digits_tokenizer(tmp_path_factory):
    words = "zero one two three four five six seven eight nine".split()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=4)) for _ in range(200)]
    return train_sentencepiece(texts, tmp_path_factory.mktemp("tok"), vocab_size=40)


def test_filters_match_substrings_like_nemo():
    state = {"encoder.a": 1, "decoder.prediction.embed.weight": 2, "joint.enc.weight": 3}
    kept, dropped = filter_state_dict(state, include=["encoder", "joint"], exclude=["joint.enc"])
    assert list(kept) == ["encoder.a"] and sorted(dropped) == ["decoder.prediction.embed.weight", "joint.enc.weight"]


def test_init_reports_loaded_excluded_and_mis_shaped(nemo_fixtures, digits_tokenizer):
    source = nemo_fixtures / "conformer_rnnt_bpe.nemo"
    model = myna.load(source)
    change_vocabulary(model, digits_tokenizer)  # embedding and joiner output now have other shapes
    report = init_from_checkpoint(model, source, exclude=["preprocessor"])
    mis_shaped = {key for key, _, _ in report.mis_shaped}
    assert mis_shaped == {"decoder.prediction.embed.weight", "joint.joint_net.2.weight", "joint.joint_net.2.bias"}
    assert all(k.startswith("preprocessor.") for k in report.excluded) and report.excluded
    assert "encoder.layers.0.self_attn.linear_q.weight" in report.loaded
    assert "mismatch: decoder.prediction.embed.weight" in report.summary()


def test_change_vocabulary_keeps_encoder_lstm_and_projections(nemo_fixtures, digits_tokenizer):
    before = myna.load(nemo_fixtures / "fastconformer_hybrid_rnnt_ctc_bpe.nemo")
    old = {k: v.clone() for k, v in before.state_dict().items()}
    fresh = change_vocabulary(before, digits_tokenizer)
    after = before.state_dict()
    vocab = digits_tokenizer.vocab_size
    assert after["decoder.prediction.embed.weight"].shape[0] == vocab + 1
    assert after["joint.joint_net.2.weight"].shape[0] == vocab + 1
    assert after["ctc_decoder.decoder_layers.0.weight"].shape[0] == vocab + 1
    for key in ["encoder.layers.1.conv.depthwise_conv.weight", "decoder.prediction.dec_rnn.lstm.weight_hh_l0",
                "joint.enc.weight", "joint.pred.bias"]:
        assert torch.equal(after[key], old[key]), key
    assert "decoder.prediction.embed.weight" in fresh
    audio = torch.randn(2, 16000)
    hyps = before.transcribe_batch(audio, torch.tensor([16000, 12000]))
    assert all(set(h.tokens) <= set(range(vocab)) for h in hyps)
    out = before.train()(audio, torch.tensor([16000, 12000]), torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2]))
    assert torch.isfinite(out["loss"])
