"""wav2vec 2.0 pre-training model: a training step, its logged quantities, and bad input."""

import pytest
import torch

from myna.interop.adapter import build_model
from myna.models.wav2vec2 import TooShortError

TINY = {
    "target": "myna.Wav2Vec2PreTrainingModel",
    "preprocessor": {"_target_": "myna.WaveformFeaturizer", "sample_rate": 16000, "normalize": True},
    "encoder": {"_target_": "myna.Wav2Vec2Encoder", "hidden_size": 32, "num_layers": 2, "num_heads": 4,
                "intermediate_size": 64, "conv_dim": [16] * 7, "pos_conv_kernel": 8, "pos_conv_groups": 4,
                "feature_grad_mult": 0.1},
    "quantizer": {"num_vars": 8, "groups": 2, "vq_dim": 16},
    "final_dim": 16,
    "masking": {"mask_prob": 0.5, "mask_length": 4},
    "contrastive": {"num_negatives": 5},
}


def _model(**overrides):
    torch.manual_seed(0)
    return build_model({**TINY, **overrides}, None)


def test_training_step_reports_what_ssl_users_watch_and_trains_every_part():
    model = _model().train()
    audio = torch.randn(3, 12000)
    out = model(audio, torch.tensor([12000, 9000, 7000]), step=10)
    for key in ("loss", "contrastive_loss", "diversity_loss", "feature_penalty", "accuracy", "prob_perplexity",
                "code_perplexity", "temperature", "num_masked"):
        assert torch.isfinite(out[key]), key
    assert 0 <= out["accuracy"] <= 1 and 2 <= out["prob_perplexity"] <= 16
    assert out["temperature"].item() == pytest.approx(2 * 0.999995 ** 10)
    out["loss"].backward()
    for name in ("quantizer.weight_proj.weight", "quantizer.vars", "project_q.weight", "project_hid.weight",
                 "encoder.masked_spec_embed", "encoder.encoder.layers.0.attention.q_proj.weight",
                 "encoder.feature_extractor.conv_layers.0.conv.weight"):
        param = dict(model.named_parameters())[name]
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_masks_and_negatives_are_a_function_of_the_step():
    model = _model().eval()
    audio, lengths = torch.randn(2, 9000), torch.tensor([9000, 8000])
    a = model(audio, lengths, step=5)["loss"]
    b = model(audio, lengths, step=5)["loss"]
    c = model(audio, lengths, step=6)["loss"]
    assert a == b and a != c


def test_fairseq_masks_are_equal_per_row_and_hf_masks_may_differ():
    model = _model()
    rng = model.step_rng(0)
    mask = model.compute_masks(torch.tensor([40, 25]), 40, rng)
    assert mask[0].sum() == mask[1].sum() and not mask[1, 25:].any()
    hf = _model(masking={"style": "hf", "mask_prob": 0.5, "mask_length": 4})
    mask = hf.compute_masks(torch.tensor([40, 12]), 40, hf.step_rng(0))
    assert not mask[1, 12:].any()


def test_too_short_audio_names_the_rows_and_the_shortest_usable_duration():
    model = _model()
    need = model.min_samples
    assert model.min_frames == 5  # 2 spans of 4 frames with distinct starts
    assert need == model.encoder.feature_extractor.min_samples(5)
    audio = torch.randn(3, 8000)
    with pytest.raises(TooShortError, match=rf"row 1: {need - 1} samples .*shortest usable duration is {need / 16000:.4f} s \({need} samples") as err:
        model(audio, torch.tensor([8000, need - 1, need]))
    assert err.value.rows == [1] and err.value.min_samples == need
    model(audio[:, :need], torch.tensor([need, need, need]))  # exactly the minimum works


def test_encoder_only_model_cannot_pretrain_and_nothing_transcribes():
    model = _model(quantizer=None)
    with pytest.raises(ValueError, match="no quantizer"):
        model(torch.randn(1, 8000), torch.tensor([8000]))
    with pytest.raises(ValueError, match="fine-tune it"):
        model.transcribe(["a.wav"])


def test_unknown_config_keys_are_named():
    with pytest.raises(ValueError, match=r"model.encoder.hidden: unknown key for myna.Wav2Vec2Encoder"):
        _model(encoder={**TINY["encoder"], "hidden": 3})
    with pytest.raises(ValueError, match=r"model.masking.prob: unknown key"):
        _model(masking={"prob": 0.5})
    with pytest.raises(ValueError, match=r"model.quantizer.dim: unknown key"):
        _model(quantizer={**TINY["quantizer"], "dim": 3})
    with pytest.raises(ValueError, match="style"):
        _model(masking={"style": "torch"})
    with pytest.raises(ValueError, match="model.joint: a wav2vec 2.0 pre-training model has no joint"):
        _model(joint={"_target_": "RNNTJoint"})


def _asr_config(kind: str) -> dict:
    encoder = {**TINY["encoder"], "freeze_feature_encoder": True, "mask_time_prob": 0.3, "mask_time_length": 2}
    encoder.pop("feature_grad_mult")
    cfg = {"preprocessor": TINY["preprocessor"], "encoder": encoder}
    if kind == "ctc":
        cfg["decoder"] = {"_target_": "ConvASRDecoder", "feat_in": 32, "num_classes": -1}
    else:
        cfg.update(decoder={"_target_": "RNNTDecoder", "prednet": {"pred_hidden": 16, "pred_rnn_layers": 1}},
                   joint={"_target_": "RNNTJoint", "jointnet": {"joint_hidden": 16, "activation": "relu"}},
                   loss={"name": "pruned", "s_range": 3})
    return cfg


@pytest.mark.parametrize("kind", ["ctc", "rnnt_pruned"])
def test_pretrained_encoder_fine_tunes_under_ctc_and_pruned_transducer_heads(kind):
    from myna.text import CharacterTokenizer

    pretrained = _model()
    tokenizer = CharacterTokenizer.from_texts(["one two three"])
    model = build_model(_asr_config(kind), tokenizer)
    encoder_state = {k: v for k, v in pretrained.state_dict().items() if k.startswith("encoder.")}
    missing, unexpected = model.load_state_dict(encoder_state, strict=False)
    assert not unexpected and not [k for k in missing if k.startswith("encoder.")]  # the encoder moves whole
    model.train()
    tokens = torch.tensor([tokenizer.encode("one two"), tokenizer.encode("three  ")])
    out = model(torch.randn(2, 9000), torch.tensor([9000, 7000]), tokens, torch.tensor([7, 5]), step=1)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    conv = model.encoder.feature_extractor.conv_layers[0].conv.weight
    assert conv.grad is None and not conv.requires_grad  # frozen feature encoder
    assert model.encoder.encoder.layers[0].attention.q_proj.weight.grad is not None
    if kind == "ctc":
        assert model.blank_id == tokenizer.pad_id == 0
