"""Batched greedy search (Transducer and CTC) against NeMo's references and one-by-one decoding."""

import numpy as np
import pytest
import torch

from myna.decoding.greedy import ctc_greedy_search, transducer_greedy_search
from myna.interop.nemo import read_nemo
from myna.interop.adapter import build
from myna.nn.joint import RNNTJoint
from myna.nn.prediction import RNNTPredictionNetwork

def _sub_state(state_dict, prefix):
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _decoder_and_joint(nemo_fixtures, name):
    archive = read_nemo(nemo_fixtures / f"{name}.nemo")
    cfg = archive.config
    vocab = len(cfg["joint"]["vocabulary"])
    decoder = build(cfg["decoder"], "model.decoder", "rnnt_decoder", num_tokens=vocab)
    joint = build(cfg["joint"], "model.joint", "rnnt_joint", num_tokens=vocab,
                  encoder_hidden=cfg["joint"]["jointnet"]["encoder_hidden"], pred_hidden=decoder.output_dim)
    decoder.load_state_dict(_sub_state(archive.state_dict, "decoder."), strict=True)
    joint.load_state_dict(_sub_state(archive.state_dict, "joint."), strict=True)
    return decoder.eval(), joint.eval(), vocab, cfg["decoding"]["greedy"]["max_symbols"]


@pytest.mark.parity
def test_greedy_tokens_and_frames_match_nemo(nemo_fixtures, transducer_model):
    ref = np.load(nemo_fixtures / f"{transducer_model}_reference.npz")
    decoder, joint, blank, max_symbols = _decoder_and_joint(nemo_fixtures, transducer_model)
    encoded = torch.from_numpy(ref["batch_encoded"]).transpose(1, 2)  # (B, T, D)
    hyps = transducer_greedy_search(encoded, torch.from_numpy(ref["batch_encoded_len"]), decoder, joint,
                                    blank_id=blank, max_symbols_per_step=max_symbols)
    lengths = ref["batch_greedy_rnnt_tokens_len"].tolist()
    tokens = np.split(ref["batch_greedy_rnnt_tokens_flat"], np.cumsum(lengths)[:-1])
    frames = np.split(ref["batch_greedy_rnnt_frame_idx_flat"], np.cumsum(lengths)[:-1])
    for hyp, want_tokens, want_frames in zip(hyps, tokens, frames):
        assert hyp.tokens == want_tokens.tolist()
        assert hyp.timestamps == want_frames.tolist()
        assert all(0.0 < c <= 1.0 for c in hyp.confidences)


def _random_decoder_joint(vocab=12, seed=0):
    torch.manual_seed(seed)
    decoder = RNNTPredictionNetwork(vocab_size=vocab, pred_hidden=16).eval()
    joint = RNNTJoint(encoder_hidden=8, pred_hidden=16, joint_hidden=16, num_classes=vocab).eval()
    with torch.no_grad():
        joint.joint_net[-1].bias[vocab] -= 1.0  # make labels likely enough to emit several per frame
    return decoder, joint


def test_batched_results_equal_one_by_one_results():
    decoder, joint = _random_decoder_joint()
    encoded = torch.randn(4, 9, 8) * 3
    lengths = torch.tensor([9, 3, 6, 1])
    batched = transducer_greedy_search(encoded, lengths, decoder, joint, blank_id=12, max_symbols_per_step=3)
    assert sum(len(h.tokens) for h in batched) > 0
    for b in range(4):
        single = transducer_greedy_search(encoded[b:b + 1, : lengths[b]], lengths[b:b + 1], decoder, joint,
                                          blank_id=12, max_symbols_per_step=3)[0]
        assert batched[b].tokens == single.tokens
        assert batched[b].timestamps == single.timestamps
        assert batched[b].score == pytest.approx(single.score, abs=1e-4)


def test_max_symbols_per_step_caps_labels_on_each_frame():
    decoder, joint = _random_decoder_joint()
    with torch.no_grad():
        joint.joint_net[-1].bias[12] = -100.0  # blank never wins: every frame hits the cap
    hyps = transducer_greedy_search(torch.randn(2, 5, 8), torch.tensor([5, 2]), decoder, joint, blank_id=12,
                                    max_symbols_per_step=2)
    assert [len(h.tokens) for h in hyps] == [10, 4]
    assert hyps[1].timestamps == [0, 0, 1, 1]


@pytest.mark.parity
def test_ctc_greedy_matches_nemo_collapsed_ids(nemo_fixtures, ctc_model):
    ref = np.load(nemo_fixtures / f"{ctc_model}_reference.npz")
    log_probs = torch.from_numpy(ref["batch_log_probs"])
    hyps = ctc_greedy_search(log_probs, torch.from_numpy(ref["batch_encoded_len"]), blank_id=log_probs.shape[-1] - 1)
    lengths = ref["batch_greedy_ctc_ids_len"].tolist()
    want = np.split(ref["batch_greedy_ctc_ids_flat"], np.cumsum(lengths)[:-1])
    assert [h.tokens for h in hyps] == [w.tolist() for w in want]


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    frames = [0, 0, 2, 2, 1, 2, 1, 1]  # blank = 2
    log_probs = torch.nn.functional.one_hot(torch.tensor([frames]), 3).float().log()
    hyp = ctc_greedy_search(log_probs, torch.tensor([8]), blank_id=2)[0]
    assert hyp.tokens == [0, 1, 1] and hyp.timestamps == [0, 4, 6]


def _frame_by_frame_greedy(encoded, length, decoder, joint, blank_id, max_symbols):
    """Reference: the textbook per-frame loop (joiner on one frame, up to max_symbols labels)."""
    tokens, frames = [], []
    state = decoder.initial_state(1)
    out, state = decoder.step(None, state)
    for t in range(length):
        for _ in range(max_symbols):
            logits = joint(encoded[None, t:t + 1], out[:, None])[0, 0, 0]
            best = int(logits.argmax())
            if best == blank_id:
                break
            tokens.append(best)
            frames.append(t)
            out, state = decoder.step(torch.tensor([best]), state)
    return tokens, frames


@pytest.mark.parametrize("lookahead", [1, 2, 5, 16])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_lookahead_search_equals_frame_by_frame_greedy(lookahead, batch_size):
    torch.manual_seed(1)
    decoder = RNNTPredictionNetwork(vocab_size=12, pred_hidden=16, pred_rnn_layers=2).eval()
    joint = RNNTJoint(encoder_hidden=8, pred_hidden=16, joint_hidden=16, num_classes=12).eval()
    with torch.no_grad():
        joint.joint_net[-1].bias[12] += 1.5  # long blank runs, with several labels on some frames
    encoded = torch.randn(6, 23, 8) * 3
    lengths = torch.tensor([23, 1, 17, 9, 0, 12])
    hyps = []
    for start in range(0, 6, batch_size):
        hyps += transducer_greedy_search(encoded[start:start + batch_size], lengths[start:start + batch_size],
                                         decoder, joint, blank_id=12, max_symbols_per_step=3,
                                         lookahead_frames=lookahead)
    emitted = 0
    with torch.no_grad():
        for b, hyp in enumerate(hyps):
            tokens, frames = _frame_by_frame_greedy(encoded[b], int(lengths[b]), decoder, joint, 12, 3)
            assert (hyp.tokens, hyp.timestamps) == (tokens, frames)
            emitted += len(tokens)
    assert emitted > 10 and hyps[4].tokens == []


def test_lookahead_below_one_is_an_error():
    decoder, joint = _random_decoder_joint()
    with pytest.raises(ValueError, match="lookahead_frames"):
        transducer_greedy_search(torch.randn(1, 3, 8), torch.tensor([3]), decoder, joint, blank_id=12,
                                 lookahead_frames=0)
