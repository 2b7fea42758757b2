"""save_nemo / `myna export-nemo`: NeMo class and keys only, same outputs when reloaded."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml

import myna
from myna.cli import main
from myna.interop.adapter import NEMO_MODEL_TARGETS as NEMO_TARGETS
from myna.interop.nemo import save_nemo
from myna.interop.nemo import read_nemo
from myna.interop.adapter import build_model
from myna.text import load_tokenizer


def _myna_only_model(nemo_fixtures):
    """The fixture Conformer-Transducer's config plus myna-only keys, randomly initialised."""
    cfg = yaml.safe_load((nemo_fixtures / "conformer_rnnt_bpe_model_config.yaml").read_text())
    cfg["encoder"]["gradient_checkpointing"] = True
    del cfg["model_defaults"]  # a myna recipe has none; NeMo's RNN-T classes need it
    cfg["loss"] = {"name": "pruned", "s_range": 3}
    cfg["decoding"] = {"strategy": "modified_beam", "greedy": {"max_symbols": 7}}
    torch.manual_seed(0)
    model = build_model({k: v for k, v in cfg.items() if k not in ("train_ds", "validation_ds", "test_ds", "optim")},
                        load_tokenizer(nemo_fixtures / "tokenizer"))
    return model.eval(), cfg


def _outputs(model, audio, lengths):
    with torch.no_grad():
        features, feature_lengths = model.featurize(audio, lengths)
        encoded, encoded_lengths = model.encoder(features, feature_lengths)
        tokens = torch.tensor([[5, 9, 2], [7, 1, 0]])
        pred, _ = model.decoder(tokens, torch.tensor([3, 2]))
        return encoded, encoded_lengths, model.joint(encoded, pred)


def _batch(nemo_fixtures):
    inputs = np.load(nemo_fixtures / "inputs.npz")
    return torch.from_numpy(inputs["batch"]).float(), torch.from_numpy(inputs["batch_len"]).long()


def test_export_writes_nemo_class_keys_and_tokenizer_artifacts(nemo_fixtures, tmp_path):
    model, cfg = _myna_only_model(nemo_fixtures)
    archive = read_nemo(save_nemo(model, tmp_path / "out.nemo", config=cfg))
    cfg = archive.config
    assert cfg["target"] == NEMO_TARGETS["rnnt"]
    assert "gradient_checkpointing" not in cfg["encoder"]
    assert cfg["loss"] == {"loss_name": "default"}  # the pruned loss has no NeMo counterpart
    assert cfg["decoding"] == {"strategy": "greedy_batch", "greedy": {"max_symbols": 7}}
    assert cfg["joint"]["num_classes"] == 128 and len(cfg["joint"]["vocabulary"]) == 128
    assert cfg["joint"]["jointnet"]["encoder_hidden"] == 96 and cfg["decoder"]["vocab_size"] == 128
    assert not any(k.startswith("simple_") for k in archive.state_dict)
    for key in ("model_path", "vocab_path", "spe_tokenizer_vocab"):
        assert cfg["tokenizer"][key][len("nemo:"):] in archive.artifacts
    assert "optim" not in cfg
    assert all(cfg[split]["manifest_filepath"] is None for split in ("train_ds", "validation_ds", "test_ds"))
    assert cfg["model_defaults"] == {"enc_hidden": 96, "pred_hidden": 128, "joint_hidden": 128}


@pytest.mark.parametrize("name", ["conformer_rnnt_bpe", "fastconformer_hybrid_rnnt_ctc_bpe"])
def test_exported_fixture_reloads_in_myna_with_identical_outputs(nemo_fixtures, tmp_path, name):
    original = myna.load(nemo_fixtures / f"{name}.nemo")
    reloaded = myna.load(save_nemo(original, tmp_path / "out.nemo"))
    audio, lengths = _batch(nemo_fixtures)
    for a, b in zip(_outputs(original, audio, lengths), _outputs(reloaded, audio, lengths)):
        assert torch.equal(a, b)
    if name.startswith("fastconformer"):
        assert reloaded.config["target"] == NEMO_TARGETS["hybrid"]
        assert reloaded.loss_config.ctc_weight == original.loss_config.ctc_weight


def test_export_nemo_cli_writes_archive_and_names_missing_file(nemo_fixtures, tmp_path, capsys):
    out = tmp_path / "ctc.nemo"
    assert main(["export-nemo", "--model", str(nemo_fixtures / "conformer_ctc_bpe.nemo"), "--out", str(out)]) == 0
    assert read_nemo(out).config["target"] == NEMO_TARGETS["ctc"]
    assert main(["export-nemo", "--model", str(tmp_path / "missing.nemo"), "--out", str(out)]) == 2
    assert "missing.nemo" in capsys.readouterr().err


_NEMO_SCRIPT = textwrap.dedent("""
    import json, sys, numpy as np, torch
    from nemo.collections.asr.models import ASRModel
    path, inputs = sys.argv[1], np.load(sys.argv[2])
    model = ASRModel.restore_from(path, map_location="cpu").eval()
    model.preprocessor.featurizer.dither = 0.0
    audio, lengths = torch.from_numpy(inputs["audio"]), torch.from_numpy(inputs["lengths"])
    with torch.no_grad():
        encoded, encoded_lengths = model.forward(input_signal=audio, input_signal_length=lengths)
        pred, _, _ = model.decoder(targets=torch.tensor([[5, 9, 2], [7, 1, 0]]), target_length=torch.tensor([3, 2]))
        joint = model.joint.joint(encoded.transpose(1, 2), pred.transpose(1, 2))
    np.savez(sys.argv[3], encoded=encoded.transpose(1, 2).numpy(), encoded_lengths=encoded_lengths.numpy(),
             joint=joint.numpy(), cls=type(model).__name__)
""")


def _nemo_python():
    """An interpreter with nemo_toolkit: this one if it imports nemo, else $MYNA_NEMO_PYTHON."""
    candidates = [sys.executable] + ([os.environ["MYNA_NEMO_PYTHON"]] if os.environ.get("MYNA_NEMO_PYTHON") else [])
    for python in candidates:
        probe = subprocess.run([python, "-c", "import nemo.collections.asr"], capture_output=True)
        if probe.returncode == 0:
            return python
    pytest.skip("nemo_toolkit is not importable (set MYNA_NEMO_PYTHON to an interpreter that has it)")


def test_nemo_restores_export_with_same_outputs(nemo_fixtures, tmp_path):
    python = _nemo_python()
    model, cfg = _myna_only_model(nemo_fixtures)
    path = save_nemo(model, tmp_path / "out.nemo", config=cfg)
    audio, lengths = _batch(nemo_fixtures)
    np.savez(tmp_path / "inputs.npz", audio=audio.numpy(), lengths=lengths.numpy())
    (tmp_path / "run.py").write_text(_NEMO_SCRIPT)
    subprocess.run([python, str(tmp_path / "run.py"), str(path), str(tmp_path / "inputs.npz"),
                    str(tmp_path / "nemo.npz")], check=True, capture_output=True)
    nemo = np.load(tmp_path / "nemo.npz")
    encoded, encoded_lengths, logits = _outputs(model, audio, lengths)
    assert str(nemo["cls"]) == "EncDecRNNTBPEModel"
    np.testing.assert_array_equal(nemo["encoded_lengths"], encoded_lengths.numpy())
    np.testing.assert_allclose(nemo["encoded"], encoded.numpy(), atol=1e-4)
    # NeMo's CPU joint returns log-probs; myna's joint raw logits.
    np.testing.assert_allclose(nemo["joint"], torch.log_softmax(logits, -1).numpy(), atol=1e-4)
