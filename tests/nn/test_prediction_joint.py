"""RNN-T prediction network, joint and CTC head: NeMo parity on all fixtures, step/forward agreement."""

import io
import tarfile

import numpy as np
import pytest
import torch
import yaml

from myna.interop.adapter import build
from myna.nn.ctc_head import CTCHead
from myna.nn.joint import RNNTJoint
from myna.nn.prediction import RNNTPredictionNetwork

TOL = 1e-4


def _load_nemo(path):
    """(config dict, state dict) from an uncompressed .nemo tar."""
    with tarfile.open(path) as tar:
        cfg = yaml.safe_load(tar.extractfile("./model_config.yaml").read())
        weights = torch.load(io.BytesIO(tar.extractfile("./model_weights.ckpt").read()), weights_only=True)
    return cfg, weights


def _strip(state_dict, prefix):
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _max_error(ours, expected):
    return (ours - expected).abs().max().item()


@pytest.fixture(scope="module")
def rnnt(nemo_fixtures, transducer_model):
    """(config, prediction net, joint, reference arrays) for one RNN-T fixture, in eval mode."""
    name = transducer_model
    cfg, weights = _load_nemo(nemo_fixtures / f"{name}.nemo")
    decoder = build(cfg["decoder"], "model.decoder", "rnnt_decoder", num_tokens=cfg["decoder"]["vocab_size"])
    decoder.load_state_dict(_strip(weights, "decoder."), strict=True)
    joint = build(cfg["joint"], "model.joint", "rnnt_joint", num_tokens=cfg["joint"]["num_classes"],
                  encoder_hidden=cfg["joint"]["jointnet"]["encoder_hidden"], pred_hidden=decoder.output_dim)
    joint.load_state_dict(_strip(weights, "joint."), strict=True)
    reference = dict(np.load(nemo_fixtures / f"{name}_reference.npz"))
    return cfg, decoder.eval(), joint.eval(), reference


def _targets(reference):
    return torch.from_numpy(reference["targets"]), torch.from_numpy(reference["target_len"])


@pytest.mark.parity
def test_prediction_network_matches_nemo_decoder(rnnt):
    _, decoder, _, ref = rnnt
    targets, target_len = _targets(ref)
    with torch.no_grad():
        out, (h, c) = decoder(targets, target_len)
    expected = torch.from_numpy(ref["batch_decoder_output"]).transpose(1, 2)  # (B, U+1, H)
    assert out.shape == expected.shape == (targets.size(0), targets.size(1) + 1, decoder.output_dim)
    assert _max_error(out, expected) <= TOL
    assert _max_error(h, torch.from_numpy(ref["batch_decoder_state_h"])) <= TOL
    assert _max_error(c, torch.from_numpy(ref["batch_decoder_state_c"])) <= TOL


@pytest.mark.parity
def test_joint_log_softmax_matches_nemo_joint(rnnt):
    cfg, decoder, joint, ref = rnnt
    encoded = torch.from_numpy(ref["batch_encoded"]).transpose(1, 2)  # (B, T, D)
    pred_out = torch.from_numpy(ref["batch_decoder_output"]).transpose(1, 2)  # (B, U+1, H)
    with torch.no_grad():
        logits = joint(encoded, pred_out)
    expected = torch.from_numpy(ref["batch_joint_output"])  # NeMo on CPU: log-probs
    assert logits.shape == expected.shape
    assert logits.size(-1) == joint.num_classes_with_blank == len(cfg["joint"]["vocabulary"]) + 1
    assert _max_error(logits.log_softmax(-1), expected) <= TOL
    raw = expected + torch.from_numpy(ref["batch_joint_logit_lse"]).unsqueeze(-1)
    assert _max_error(logits, raw) <= TOL * max(1.0, raw.abs().max().item())


def test_joint_after_projection_accepts_pruned_shapes(rnnt):
    _, _, joint, ref = rnnt
    encoded = torch.from_numpy(ref["batch_encoded"]).transpose(1, 2)
    pred_out = torch.from_numpy(ref["batch_decoder_output"]).transpose(1, 2)
    batch, frames, s_range = encoded.size(0), encoded.size(1), 3
    with torch.no_grad():
        full = joint(encoded, pred_out)  # (B, T, U+1, V+1)
        f = joint.project_encoder(encoded)  # (B, T, J)
        g = joint.project_prediction(pred_out)  # (B, U+1, J)
        ranges = torch.randint(0, pred_out.size(1), (batch, frames, s_range))
        g_pruned = torch.gather(g.unsqueeze(1).expand(-1, frames, -1, -1), 2,
                                ranges.unsqueeze(-1).expand(-1, -1, -1, g.size(-1)))  # (B, T, s, J)
        pruned = joint.joint_after_projection(f.unsqueeze(2), g_pruned)  # (B, T, s, V+1)
    expected = torch.gather(full, 2, ranges.unsqueeze(-1).expand(-1, -1, -1, full.size(-1)))
    torch.testing.assert_close(pruned, expected, atol=1e-5, rtol=1e-5)


def test_step_reproduces_teacher_forced_forward(rnnt):
    _, decoder, _, ref = rnnt
    targets, _ = _targets(ref)
    with torch.no_grad():
        full, _ = decoder(targets)
        state = decoder.initial_state(targets.size(0))
        out, state = decoder.step(None, state)
        steps = [out]
        for u in range(targets.size(1)):
            out, state = decoder.step(targets[:, u], state)
            steps.append(out)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_blank_token_step_equals_start_step(rnnt):
    _, decoder, _, _ = rnnt
    with torch.no_grad():
        state = decoder.initial_state(2)
        start, _ = decoder.step(None, state)
        blank, _ = decoder.step(torch.full((2,), decoder.blank_idx), state)
    torch.testing.assert_close(blank, start)


@pytest.mark.parity
def test_frame_synchronous_greedy_with_step_reproduces_nemo_tokens(rnnt):
    cfg, decoder, joint, ref = rnnt
    max_symbols = cfg["decoding"]["greedy"]["max_symbols"]
    encoded = torch.from_numpy(ref["batch_encoded"]).transpose(1, 2)
    lengths = ref["batch_encoded_len"].tolist()
    expected = np.split(ref["batch_greedy_rnnt_tokens_flat"], np.cumsum(ref["batch_greedy_rnnt_tokens_len"])[:-1])
    blank = joint.blank_idx
    with torch.no_grad():
        for b, length in enumerate(lengths):
            f = joint.project_encoder(encoded[b : b + 1, :length])[0]  # (T, J)
            out, state = decoder.step(None, decoder.initial_state(1))
            g = joint.project_prediction(out)[0]  # (J,)
            tokens = []
            for t in range(length):
                for _ in range(max_symbols):
                    best = int(joint.joint_after_projection(f[t], g).argmax())
                    if best == blank:
                        break
                    tokens.append(best)
                    out, state = decoder.step(torch.tensor([best]), state)
                    g = joint.project_prediction(out)[0]
            assert tokens == expected[b].tolist()


def test_select_state_mixes_per_utterance():
    decoder = RNNTPredictionNetwork(vocab_size=10, pred_hidden=8, pred_rnn_layers=2)
    old = decoder.initial_state(3)
    _, new = decoder.step(torch.tensor([1, 2, 3]), old)
    h, c = decoder.select_state(torch.tensor([True, False, True]), new, old)
    assert h.shape == (2, 3, 8)
    torch.testing.assert_close(h[:, 1], old[0][:, 1])
    torch.testing.assert_close(c[:, 0], new[1][:, 0])


def test_prediction_network_init_follows_nemo():
    decoder = RNNTPredictionNetwork(vocab_size=10, pred_hidden=8)
    embed = decoder.prediction["embed"].weight
    assert embed.shape == (11, 8) and embed[10].abs().sum() == 0  # blank row is the zero pad row
    lstm = decoder.prediction["dec_rnn"].lstm
    assert torch.all(lstm.bias_ih_l0[8:16] == 1.0)
    assert torch.all(lstm.bias_hh_l0[8:16] == 0.0)


def test_joint_without_dropout_puts_output_layer_at_index_one():
    joint = RNNTJoint(encoder_hidden=4, pred_hidden=5, joint_hidden=6, num_classes=7, dropout=0.0)
    assert sorted(joint.state_dict()) == sorted(
        ["enc.weight", "enc.bias", "pred.weight", "pred.bias", "joint_net.1.weight", "joint_net.1.bias"]
    )
    assert joint(torch.randn(2, 3, 4), torch.randn(2, 2, 5)).shape == (2, 3, 2, 8)


def test_unsupported_joint_activation_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="softsign"):
        RNNTJoint(encoder_hidden=4, pred_hidden=4, joint_hidden=4, num_classes=3, activation="softsign")


@pytest.mark.parity
def test_ctc_head_matches_nemo_conv_asr_decoder(nemo_fixtures, ctc_head_model):
    name = ctc_head_model
    cfg, weights = _load_nemo(nemo_fixtures / f"{name}.nemo")
    hybrid = bool(cfg.get("aux_ctc"))  # the hybrid's head is aux_ctc.decoder, weights under ctc_decoder.
    prefix, section = ("ctc_decoder.", ("aux_ctc", "decoder")) if hybrid else ("decoder.", ("decoder",))
    expected_key = "batch_ctc_log_probs" if hybrid else "batch_log_probs"
    for key in section:
        cfg = cfg[key]
    head = CTCHead(feat_in=cfg["feat_in"], num_classes=cfg["num_classes"])
    head.load_state_dict(_strip(weights, prefix), strict=True)
    ref = np.load(nemo_fixtures / f"{name}_reference.npz")
    encoded = torch.from_numpy(ref["batch_encoded"]).transpose(1, 2)
    with torch.no_grad():
        log_probs = head.eval()(encoded)
    expected = torch.from_numpy(ref[expected_key])
    assert log_probs.shape == expected.shape
    assert _max_error(log_probs, expected) <= TOL


@pytest.mark.parametrize("layers", [1, 3])
def test_inference_step_through_lstm_cells_equals_the_lstm(layers):
    torch.manual_seed(0)
    net = RNNTPredictionNetwork(vocab_size=10, pred_hidden=12, pred_rnn_layers=layers).eval()
    tokens = torch.tensor([[3, 0, 9, 10, 4]])  # 10 is blank: the zero input
    with torch.no_grad():
        want, (want_h, want_c) = net(tokens)
        state, steps = None, []
        out, state = net.step(None, state)
        steps.append(out)
        for u in range(tokens.size(1)):
            out, state = net.step(tokens[:, u], state)
            steps.append(out)
    torch.testing.assert_close(torch.stack(steps, dim=1), want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(state[0], want_h, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(state[1], want_c, atol=1e-6, rtol=1e-5)
    assert state[0].shape == (layers, 1, 12)
