"""wav2vec 2.0 against its references: NVIDIA DLE's Hourglass/plain models and Hugging Face's.

Every expected value, size and vocabulary comes from the fixture files (``$MYNA_FIXTURES``), so
another fixture set of the same layout can be swapped in.
"""

import functools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import myna
from myna.losses.negatives import sample_negatives_wav2vec2
from myna.nn.masking import compute_mask_indices_hf

pytestmark = pytest.mark.parity


def _rel(ours, ref) -> float:
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))


# ---- NVIDIA DLE (Hourglass and plain) ------------------------------------------------------------

@pytest.fixture(scope="module")
def dle_inputs(dle_fixtures):
    return np.load(dle_fixtures / "inputs.npz")


@functools.lru_cache(maxsize=None)
def _load(path):
    """Each fixture model is loaded once per session (the tests only run it in eval mode)."""
    return myna.load(path)


def _dle(dle_fixtures, name):
    return _load(dle_fixtures / f"{name}.pt"), np.load(dle_fixtures / f"{name}_reference.npz")


def _time_major_names(ref) -> list[str]:
    """The T x B x C arrays of the batch run (encoder-stack internals)."""
    stack = ("after_", "post_input", "layers_", "hourglass_layers_", "post_layers_")
    return [k for k in ref.files if k.startswith(stack) and not k.startswith("single_")]


def test_dle_every_recorded_stage_matches(dle_fixtures, dle_inputs, dle_model):
    model, ref = _dle(dle_fixtures, dle_model)
    with torch.no_grad():
        out = model.encoder.extract(torch.from_numpy(dle_inputs["source"]), torch.from_numpy(dle_inputs["lengths"]),
                                    return_stages=True)
    stages = out.stages
    for name in ("conv_features", "features_ln", "features_proj", "encoder_input_zeroed", "pos_conv_out", "encoder_ln"):
        assert np.abs(stages[name].numpy() - ref[name]).max() < 1e-4, name
    names = _time_major_names(ref)
    assert "after_pre_layers" in names or "layers_0_out" in names
    for name in names:
        ours = stages[name].transpose(0, 1).numpy()  # myna is B x T x C
        assert ours.shape == ref[name].shape, name
        assert np.abs(ours - ref[name]).max() < 1e-4, name
    assert np.array_equal(out.padding_mask.numpy(), ref["padding_mask"])
    if "pooled_padding_mask" in ref.files:
        assert np.array_equal(stages["pooled_padding_mask"].numpy(), ref["pooled_padding_mask"])
    assert np.abs(out.hidden.numpy() - ref["encoder_out"]).max() < 1e-4


def test_dle_single_utterance_run_matches(dle_fixtures, dle_inputs, dle_model):
    model, ref = _dle(dle_fixtures, dle_model)
    with torch.no_grad():
        out = model.encoder.extract(torch.from_numpy(dle_inputs["single"]), None, return_stages=True)
    assert out.padding_mask is None
    for name in [k for k in ref.files if k.startswith("single_")]:
        key = name[len("single_"):]
        ours = out.hidden if key == "encoder_out" else out.stages[key]
        ours = ours.numpy()
        if ref[name].shape != ours.shape:
            ours = ours.transpose(1, 0, 2)
        assert np.abs(ours - ref[name]).max() < 1e-4, name


def test_dle_quantizer_on_all_frames(dle_fixtures, dle_inputs, dle_model):
    model, ref = _dle(dle_fixtures, dle_model)
    with torch.no_grad():
        enc = model.encoder.extract(torch.from_numpy(dle_inputs["source"]), torch.from_numpy(dle_inputs["lengths"]))
        quant = model.quantizer(enc.extract_features)
    assert np.abs(quant.logits.numpy() - ref["quantizer_logits"]).max() < 1e-4
    assert np.array_equal(quant.ids.numpy(), ref["quantizer_targets"])
    assert np.abs(quant.quantized.numpy() - ref["quantized"]).max() < 1e-5
    assert abs(float(quant.prob_perplexity) - float(ref["quantizer_prob_perplexity_all_frames"])) < 1e-4
    assert abs(float(quant.code_perplexity) - float(ref["quantizer_code_perplexity_all_frames"])) < 1e-4
    with torch.no_grad():
        assert np.abs(model.project_q(quant.quantized).numpy() - ref["project_q_all"]).max() < 1e-4
        assert np.abs(model.project_hid(enc.hidden).numpy() - ref["final_proj_all"]).max() < 1e-4


def _dle_negatives(mask: torch.Tensor, neg_idxs: np.ndarray) -> torch.Tensor:
    """DLE's (B, M*K) indices into the (B*M) masked targets -> myna's (B, T, K) frame indices."""
    batch, time = mask.shape
    per_row = int(mask[0].sum())
    k = neg_idxs.shape[1] // per_row
    flat = torch.from_numpy(neg_idxs).view(batch, per_row, k)
    out = torch.zeros(batch, time, k, dtype=torch.long)
    for b in range(batch):
        positions = mask[b].nonzero().flatten()
        assert torch.equal(flat[b] // per_row, torch.full_like(flat[b], b))  # same-utterance negatives
        out[b, positions] = positions[flat[b] % per_row] + b * time
    return out


def test_dle_contrastive_pass_replays_exactly(dle_fixtures, dle_inputs, dle_model):
    model, ref = _dle(dle_fixtures, dle_model)
    recorded = json.loads((dle_fixtures / "index.json").read_text())["models"][dle_model]
    mask = torch.from_numpy(ref["mask_indices"])
    negatives = _dle_negatives(mask, ref["neg_idxs"])
    with torch.no_grad():
        features, lengths = model.featurize(torch.from_numpy(dle_inputs["source"]), torch.from_numpy(dle_inputs["lengths"]))
        out = model.forward_with_masks(features, lengths, mask, negatives)
    assert np.abs(out.encoder.hidden.numpy() - ref["masked_encoder_out"]).max() < 1e-4
    logits = out.logits.view(out.logits.shape[0], *ref["contrastive_logits"].shape[1:]).numpy()
    finite = np.isfinite(ref["contrastive_logits"])
    assert np.array_equal(np.isfinite(logits), finite)  # the same negatives are blocked
    assert np.abs(logits[finite] - ref["contrastive_logits"][finite]).max() < 1e-4
    losses = out.losses
    assert _rel(losses.contrastive.item(), ref["loss_infonce_sum"]) < 1e-5
    assert _rel(out.quantizer.prob_perplexity.item(), ref["masked_prob_perplexity"]) < 1e-5
    assert _rel(out.quantizer.code_perplexity.item(), ref["masked_code_perplexity"]) < 1e-5
    assert _rel(losses.feature_penalty.item(), ref["masked_features_pen"]) < 1e-5
    assert losses.num_masked == recorded["dle_criterion_sample_size"]
    assert _rel(losses.total.item(), ref["loss_total"]) < 1e-5
    assert _rel(losses.total.item(), recorded["dle_criterion_loss"]) < 1e-5


# ---- Hugging Face ---------------------------------------------------------------------------------

def _hf(hf_w2v_fixtures, name):
    return _load(hf_w2v_fixtures / name), np.load(hf_w2v_fixtures / f"{name}_reference.npz")


def _hf_batch(ref):
    audio = torch.from_numpy(ref["raw_batch"])
    return audio, torch.from_numpy(ref["attention_mask_batch"]).sum(-1)


def test_hf_front_end_gives_the_feature_extractor_values(hf_w2v_fixtures, hf_w2v_model):
    model, ref = _hf(hf_w2v_fixtures, hf_w2v_model)
    audio, lengths = _hf_batch(ref)
    features, _ = model.featurize(audio, lengths)
    assert np.abs(features[..., 0].numpy() - ref["input_values_batch"]).max() < 1e-5
    assert model.encoder.output_lengths(lengths).tolist() == ref["feat_extract_output_lengths_batch"].tolist()


@pytest.mark.parametrize("run", ["single", "batch"])
def test_hf_ctc_features_hidden_states_and_logits(hf_w2v_fixtures, hf_w2v_model, run):
    model, ref = _hf(hf_w2v_fixtures, hf_w2v_model)
    if f"{run}_logits" not in ref.files:
        pytest.skip(f"{hf_w2v_model} is not a CTC model")
    values = torch.from_numpy(ref[f"input_values_{run}"])
    lengths = torch.from_numpy(ref["attention_mask_batch"]).sum(-1) if run == "batch" else None
    with torch.no_grad():
        out = model.encoder.extract(values, lengths, return_stages=True)
        logits = model.decoder.logits(out.hidden)
    hidden = [out.stages["encoder_ln"]] + [out.stages[f"layers_{i}_out"] for i in range(len(model.encoder.encoder.layers))]
    n_hidden = len([k for k in ref.files if k.startswith(f"{run}_hidden_states_")])
    assert n_hidden == len(hidden)
    for i, ours in enumerate(hidden):
        if i == n_hidden - 1 and not model.encoder.encoder.layer_norm_first:
            ours = out.hidden
        assert _rel(ours, ref[f"{run}_hidden_states_{i}"]) < 1e-4, i
    assert _rel(out.extract_features, ref[f"{run}_extract_features"]) < 1e-4
    assert _rel(out.hidden, ref[f"{run}_last_hidden_state"]) < 1e-4
    assert _rel(logits, ref[f"{run}_logits"]) < 1e-4
    # greedy ids where the recorded top-1 margin exceeds the logit error
    top2 = np.sort(ref[f"{run}_logits"], -1)[..., -2:]
    confident = (top2[..., 1] - top2[..., 0]) > 1e-4
    assert np.array_equal(logits.argmax(-1).numpy()[confident], ref[f"{run}_greedy_ids"][confident])


def test_hf_ctc_loss_and_greedy_text(hf_w2v_fixtures, hf_w2v_model):
    model, ref = _hf(hf_w2v_fixtures, hf_w2v_model)
    if "batch_ctc_loss" not in ref.files:
        pytest.skip(f"{hf_w2v_model} is not a CTC model")
    info = json.loads((hf_w2v_fixtures / f"{hf_w2v_model}_reference.json").read_text())
    audio, lengths = _hf_batch(ref)
    with torch.no_grad():
        features, feature_lengths = model.featurize(audio, lengths)
        encoded, encoded_lengths = model.encoder(features, feature_lengths)
        log_probs = model.decoder(encoded)
    labels = torch.from_numpy(ref["labels"])
    label_lengths = (labels >= 0).sum(-1)
    # HF's reduction "sum"; input lengths: from the attention mask only when one was passed.
    input_lengths = encoded_lengths if info["calls"]["batch_attention_mask_passed_to_model"] else \
        torch.full_like(encoded_lengths, encoded.shape[1])
    loss = F.ctc_loss(log_probs.transpose(0, 1), labels.clamp(min=0), input_lengths, label_lengths,
                      blank=model.blank_id, reduction="sum", zero_infinity=False)
    assert _rel(loss.item(), ref["batch_ctc_loss"]) < 1e-4
    # The model's tokenizer encodes the recorded targets into the recorded labels.
    for row, text in enumerate(info["target_texts"]):
        assert model.tokenizer.encode(text) == labels[row, : int(label_lengths[row])].tolist()
    # Row 0 spans the whole batch, so HF's all-frames decoding equals myna's length-aware one.
    with torch.no_grad():
        text = model.decode(encoded, encoded_lengths)[0].text
    assert text == str(ref["batch_greedy_text"][0])


def test_hf_pretraining_losses_on_recorded_masks_and_negatives(hf_w2v_fixtures, hf_w2v_model):
    model, ref = _hf(hf_w2v_fixtures, hf_w2v_model)
    if "mask_time_indices" not in ref.files:
        pytest.skip(f"{hf_w2v_model} is not a pre-training model")
    audio, lengths = _hf_batch(ref)
    mask = torch.from_numpy(ref["mask_time_indices"])
    negatives = torch.from_numpy(ref["sampled_negative_indices"])
    with torch.no_grad():
        features, feature_lengths = model.featurize(audio, lengths)
        out = model.forward_with_masks(features, feature_lengths, mask, negatives)
    quant = out.quantizer
    assert _rel(quant.logits, ref["quantizer_logits"]) < 1e-4
    assert np.array_equal(quant.ids.numpy(), ref["quantizer_codevector_idx"])
    assert _rel(quant.quantized, ref["quantized_features"]) < 1e-5
    assert _rel(out.projected_states, ref["projected_states"]) < 1e-4
    assert _rel(out.projected_quantized, ref["projected_quantized_states"]) < 1e-4
    assert _rel(out.encoder.hidden, ref["hidden_states_2"]) < 1e-4
    assert _rel(out.perplexity.item(), ref["codevector_perplexity"]) < 1e-5
    losses = out.losses
    assert _rel(losses.contrastive.item(), ref["contrastive_loss"]) < 1e-5
    assert _rel((losses.diversity * losses.num_masked).item(), ref["diversity_loss"]) < 1e-5
    assert _rel(losses.total.item(), ref["loss"]) < 1e-5


def test_hf_masks_and_negatives_replay_from_the_recorded_seed(hf_w2v_fixtures, hf_w2v_model):
    ref = np.load(hf_w2v_fixtures / f"{hf_w2v_model}_reference.npz")
    if "mask_time_indices" not in ref.files:
        pytest.skip(f"{hf_w2v_model} is not a pre-training model")
    info = json.loads((hf_w2v_fixtures / f"{hf_w2v_model}_reference.json").read_text())
    call = info["calls"]["mask"]  # "np.random.seed(S); _compute_mask_indices((B,T), mask_prob=P, mask_length=L, ..., min_masks=M)"
    seed = int(call.split("np.random.seed(")[1].split(")")[0])
    prob = float(call.split("mask_prob=")[1].split(",")[0])
    length = int(call.split("mask_length=")[1].split(",")[0])
    min_masks = int(call.split("min_masks=")[1].split(")")[0])
    rng = np.random.RandomState(seed)
    shape = ref["mask_time_indices"].shape
    mask = compute_mask_indices_hf(shape, prob, length, ref["sub_attention_mask"].sum(-1), min_masks, rng=rng)
    assert np.array_equal(mask, ref["mask_time_indices"])
    negatives = sample_negatives_wav2vec2(mask, ref["sampled_negative_indices"].shape[-1], rng=rng)
    assert np.array_equal(negatives.numpy(), ref["sampled_negative_indices"])
