"""Hugging Face wav2vec 2.0 folders: read (both weight files, both weight-norm key forms), write,
and reload in transformers with the same outputs."""

import json
import shutil

import numpy as np
import pytest
import torch

import myna
from myna.interop.hf import HFFormatError, myna_to_hf, read_hf_folder
from myna.losses.negatives import sample_negatives_wav2vec2
from myna.interop.adapter import build_model
from myna.interop.hf import save_hf


def _logits(model, audio, lengths):
    with torch.no_grad():
        features, feature_lengths = model.featurize(audio, lengths)
        encoded, _ = model.encoder(features, feature_lengths)
        return model.decoder.logits(encoded)


def _hf_reference(folder, name):
    return np.load(folder / f"{name}_reference.npz")


@pytest.fixture(scope="module")
def ctc_names(hf_w2v_fixtures):
    index = json.loads((hf_w2v_fixtures / "index.json").read_text())["models"]
    names = [n for n in sorted(index) if (hf_w2v_fixtures / n / "vocab.json").is_file()]
    if not names:
        pytest.skip("no CTC folder in the fixture set")
    return names


@pytest.mark.parity
def test_pytorch_bin_and_old_weight_norm_keys_load_the_same(hf_w2v_fixtures, ctc_names, tmp_path):
    from safetensors.torch import load_file

    name = ctc_names[0]
    source = hf_w2v_fixtures / name
    copy = tmp_path / name
    shutil.copytree(source, copy)
    state = load_file(str(copy / "model.safetensors"))
    (copy / "model.safetensors").unlink()
    old = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                                   "weight_v")
        old[key] = value
    torch.save(old, copy / "pytorch_model.bin")
    ref = _hf_reference(hf_w2v_fixtures, name)
    audio = torch.from_numpy(ref["raw_batch"])
    lengths = torch.from_numpy(ref["attention_mask_batch"]).sum(-1)
    assert torch.equal(_logits(myna.load(copy), audio, lengths), _logits(myna.load(source), audio, lengths))


def test_unreadable_folders_are_named(tmp_path):
    with pytest.raises(HFFormatError, match="no config.json"):
        read_hf_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    with pytest.raises(HFFormatError, match="model_type='hubert'"):
        read_hf_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "architectures": ["Wav2Vec2ForCTC"]}))
    with pytest.raises(HFFormatError, match="no model.safetensors"):
        read_hf_folder(tmp_path)
    torch.save({"w": torch.zeros(1), "evil": object()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(HFFormatError, match="weights_only=True"):
        read_hf_folder(tmp_path)


def _transformers():
    return pytest.importorskip("transformers")


@pytest.mark.parity
def test_exported_ctc_folder_reloads_in_transformers_with_the_same_logits(hf_w2v_fixtures, ctc_names, tmp_path):
    transformers = _transformers()
    for name in ctc_names:
        model = myna.load(hf_w2v_fixtures / name)
        out = save_hf(model, tmp_path / name)
        ref = _hf_reference(hf_w2v_fixtures, name)
        values = torch.from_numpy(ref["input_values_batch"])
        lengths = torch.from_numpy(ref["attention_mask_batch"]).sum(-1)
        theirs = transformers.Wav2Vec2ForCTC.from_pretrained(out).eval()
        mask = torch.from_numpy(ref["attention_mask_batch"]) if model.encoder.use_attention_mask else None
        with torch.no_grad():
            expected = theirs(values, attention_mask=mask).logits
        assert torch.allclose(_logits(model, torch.from_numpy(ref["raw_batch"]), lengths), expected, atol=1e-5)
        assert np.abs(expected.numpy() - ref["batch_logits"]).max() < 1e-4
        tokenizer = transformers.Wav2Vec2CTCTokenizer.from_pretrained(out)
        assert tokenizer.get_vocab() == model.tokenizer.vocab
        # and myna reads its own export back unchanged
        again = myna.load(out)
        assert torch.equal(_logits(again, torch.from_numpy(ref["raw_batch"]), lengths),
                           _logits(model, torch.from_numpy(ref["raw_batch"]), lengths))


def test_myna_pretraining_model_round_trips_through_transformers(tmp_path):
    transformers = _transformers()
    torch.manual_seed(0)
    cfg = {"target": "myna.Wav2Vec2PreTrainingModel",
           "preprocessor": {"_target_": "myna.WaveformFeaturizer", "normalize": True},
           "encoder": {"_target_": "myna.Wav2Vec2Encoder", "hidden_size": 32, "num_layers": 2, "num_heads": 4,
                       "intermediate_size": 64, "conv_dim": [16] * 7, "pos_conv_kernel": 8, "pos_conv_groups": 4,
                       "feat_extract_norm": "layer", "layer_norm_first": True},
           "quantizer": {"num_vars": 8, "groups": 2, "vq_dim": 16}, "final_dim": 16,
           "masking": {"mask_prob": 0.5, "mask_length": 4}, "contrastive": {"num_negatives": 5}}
    model = build_model(cfg, None).eval()
    folder = save_hf(model, tmp_path / "pt", cfg)
    theirs = transformers.Wav2Vec2ForPreTraining.from_pretrained(folder).eval()
    audio = torch.randn(2, 9000)
    lengths = torch.tensor([9000, 7000])
    mask = model.compute_masks(model.encoder.output_lengths(lengths), 27, np.random.RandomState(0))
    negatives = sample_negatives_wav2vec2(mask, 5, rng=np.random.RandomState(1))
    with torch.no_grad():
        features, feature_lengths = model.featurize(audio, lengths)
        ours = model.forward_with_masks(features, feature_lengths, mask, negatives)
        attention = (torch.arange(9000)[None] < lengths[:, None]).long()
        out = theirs(features[..., 0], attention_mask=attention, mask_time_indices=mask,
                     sampled_negative_indices=negatives)
    assert torch.allclose(ours.projected_states, out.projected_states, atol=1e-5)
    assert torch.allclose(ours.projected_quantized, out.projected_quantized_states, atol=1e-5)
    assert torch.allclose(ours.losses.contrastive, out.contrastive_loss, rtol=1e-5)
    # and back: transformers' own save_pretrained folder loads in myna with the same states
    theirs.save_pretrained(tmp_path / "theirs")
    again = myna.load(tmp_path / "theirs")
    with torch.no_grad():
        back = again.forward_with_masks(features, feature_lengths, mask, negatives)
    assert torch.allclose(back.projected_states, ours.projected_states, atol=1e-5)


def test_hourglass_models_do_not_export(tmp_path):
    cfg = {"target": "myna.Wav2Vec2PreTrainingModel",
           "encoder": {"_target_": "myna.Wav2Vec2Encoder", "hourglass": "[1,(2,2),1]"}}
    with pytest.raises(ValueError, match="no Hourglass"):
        myna_to_hf(cfg, {})
