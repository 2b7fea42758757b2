"""interop/nemo.py: .nemo archives in and out; myna's archives restore in NeMo and back in myna whole."""

import json
import subprocess
import tarfile
import textwrap

import numpy as np
import pytest
import torch
import yaml

import myna
from myna.cli import main
from myna.interop.adapter import NEMO_MODEL_TARGETS, build_model
from myna.interop.nemo import (
    MYNA_CONFIG_MEMBER,
    MYNA_WEIGHTS_MEMBER,
    NemoFormatError,
    find_model_file,
    read_nemo,
    save_nemo,
    tokenizer_files,
    write_nemo,
)

RUN_ONLY = ("train_ds", "validation_ds", "test_ds", "optim")


# ---- archives ----------------------------------------------------------------------------------
@pytest.mark.parity
def test_fixture_archive_reads_config_weights_and_tokenizer(nemo_fixtures, nemo_model):
    archive = read_nemo(nemo_fixtures / f"{nemo_model}.nemo")
    index = json.loads((nemo_fixtures / "index.json").read_text())["models"][nemo_model]
    listed = json.loads((nemo_fixtures / f"{nemo_model}_state_dict.json").read_text())
    assert archive.config["target"] == index["class"]
    assert {k: list(v.shape) for k, v in archive.state_dict.items()} == {k: v["shape"] for k, v in listed.items()}
    files = tokenizer_files(archive, nemo_model)
    assert files["tokenizer.model"] == (nemo_fixtures / "tokenizer" / "tokenizer.model").read_bytes()
    assert archive.myna_config is None and archive.myna_state_dict == {}


def test_round_trip_keeps_config_weights_and_artifacts(tmp_path):
    state = {"encoder.w": torch.randn(3, 4), "joint.b": torch.arange(5)}
    path = write_nemo(tmp_path / "m.nemo", {"target": "x", "a": [1, 2]}, state, {"tok.model": b"\x00\x01"})
    back = read_nemo(path)
    assert back.config == {"target": "x", "a": [1, 2]}
    assert torch.equal(back.state_dict["encoder.w"], state["encoder.w"])
    assert back.artifacts == {"tok.model": b"\x00\x01"}
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left no temp file


def test_bad_archives_name_the_file(tmp_path):
    not_tar = tmp_path / "x.nemo"
    not_tar.write_text("hello")
    with pytest.raises(NemoFormatError, match="x.nemo: not a readable .nemo \\(tar\\) archive"):
        read_nemo(not_tar)
    no_weights = tmp_path / "y.nemo"
    with tarfile.open(no_weights, "w") as tar:
        tar.add(not_tar, arcname="./model_config.yaml")
    with pytest.raises(NemoFormatError, match="y.nemo: no model_weights.ckpt"):
        read_nemo(no_weights)
    with pytest.raises(NemoFormatError, match="no such file"):
        read_nemo(tmp_path / "missing.nemo")


def test_archive_without_its_tokenizer_member_is_an_error_naming_the_file(nemo_fixtures, nemo_model, tmp_path):
    archive = read_nemo(nemo_fixtures / f"{nemo_model}.nemo")
    path = write_nemo(tmp_path / "no_tok.nemo", archive.config, archive.state_dict)
    with pytest.raises(ValueError, match="no_tok.nemo: the archive has no tokenizer member"):
        myna.load(path)


# ---- myna's models out and back ------------------------------------------------------------------
def _myna_only_model(nemo_fixtures, name):
    """A fixture Transducer's config plus myna-only keys (pruned loss, checkpointing), randomly
    initialised; returns (model, config)."""
    cfg = yaml.safe_load((nemo_fixtures / f"{name}_model_config.yaml").read_text())
    cfg["encoder"]["gradient_checkpointing"] = True
    del cfg["model_defaults"]  # a myna recipe has none; NeMo's RNN-T classes need it
    cfg["loss"] = {"name": "pruned", "s_range": 3}
    cfg["decoding"] = {"strategy": "modified_beam", "greedy": {"max_symbols": 7}}
    torch.manual_seed(0)
    tokenizer = myna.load(nemo_fixtures / f"{name}.nemo").tokenizer
    model = build_model({k: v for k, v in cfg.items() if k not in RUN_ONLY}, tokenizer)
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


def test_save_writes_nemo_class_keys_and_tokenizer_artifacts(nemo_fixtures, transducer_model, tmp_path):
    model, cfg = _myna_only_model(nemo_fixtures, transducer_model)
    archive = read_nemo(save_nemo(model, tmp_path / "out.nemo", config=cfg))
    nemo = archive.config
    vocab = model.tokenizer.vocab_size
    assert nemo["target"] == NEMO_MODEL_TARGETS["hybrid" if cfg.get("aux_ctc") else "rnnt"]
    assert "gradient_checkpointing" not in nemo["encoder"]
    assert nemo["loss"] == {"loss_name": "default"}  # the pruned loss has no NeMo counterpart
    assert nemo["decoding"] == {"strategy": "greedy_batch", "greedy": {"max_symbols": 7}}
    assert nemo["joint"]["num_classes"] == vocab and len(nemo["joint"]["vocabulary"]) == vocab
    assert nemo["joint"]["jointnet"]["encoder_hidden"] == model.encoder.output_dim
    assert nemo["decoder"]["vocab_size"] == vocab
    assert not any(k.startswith("simple_") for k in archive.state_dict)
    for key in ("model_path", "vocab_path", "spe_tokenizer_vocab"):
        assert nemo["tokenizer"][key][len("nemo:"):] in archive.artifacts
    assert "optim" not in nemo
    assert all(nemo[split]["manifest_filepath"] is None for split in ("train_ds", "validation_ds", "test_ds"))
    assert nemo["model_defaults"] == {"enc_hidden": model.joint.encoder_hidden, "pred_hidden": model.joint.pred_hidden,
                                      "joint_hidden": model.joint.joint_hidden}
    # myna's own config and weights ride along as members NeMo does not read
    assert archive.myna_config["loss"] == {"name": "pruned", "s_range": 3}
    assert archive.myna_config["encoder"]["gradient_checkpointing"] is True
    assert sorted(archive.myna_state_dict) == ["simple_am_proj.bias", "simple_am_proj.weight",
                                               "simple_lm_proj.bias", "simple_lm_proj.weight"]


def test_myna_only_config_and_weights_come_back_on_load(nemo_fixtures, transducer_model, tmp_path):
    model, cfg = _myna_only_model(nemo_fixtures, transducer_model)
    back = myna.load(save_nemo(model, tmp_path / "out.nemo", config=cfg))
    assert back.loss_config.name == "pruned" and back.loss_config.s_range == 3
    assert back.encoder.gradient_checkpointing is True and back.max_symbols_per_step == 7
    ours, theirs = model.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("kind", ["rnnt", "hybrid", "ctc"])
def test_saved_fixture_reloads_in_myna_with_identical_outputs(nemo_fixtures, tmp_path, kind):
    kinds = {name: yaml.safe_load((nemo_fixtures / f"{name}_model_config.yaml").read_text())
             for name in json.loads((nemo_fixtures / "index.json").read_text())["models"]}
    names = [n for n, c in kinds.items() if c["target"].endswith(NEMO_MODEL_TARGETS[kind].rsplit(".", 1)[-1])]
    original = myna.load(nemo_fixtures / f"{names[0]}.nemo")
    reloaded = myna.load(save_nemo(original, tmp_path / "out.nemo"))
    assert reloaded.config["target"] == NEMO_MODEL_TARGETS[kind]
    audio, lengths = _batch(nemo_fixtures)
    assert original.transcribe_batch(audio, lengths) == reloaded.transcribe_batch(audio, lengths)
    ours, theirs = original.state_dict(), reloaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    if kind == "hybrid":
        assert reloaded.loss_config.ctc_weight == original.loss_config.ctc_weight


def test_export_nemo_cli_writes_archive_and_names_missing_file(nemo_fixtures, ctc_model, tmp_path, capsys):
    out = tmp_path / "ctc.nemo"
    assert main(["export-nemo", "--model", str(nemo_fixtures / f"{ctc_model}.nemo"), "--out", str(out)]) == 0
    assert read_nemo(out).config["target"] == NEMO_MODEL_TARGETS["ctc"]
    assert main(["export-nemo", "--model", str(tmp_path / "missing.nemo"), "--out", str(out)]) == 2
    assert "missing.nemo" in capsys.readouterr().err


def test_a_run_folder_loads_its_final_model(nemo_fixtures, ctc_model, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: final\n")
    save_nemo(myna.load(nemo_fixtures / f"{ctc_model}.nemo"), run / "final.nemo")
    save_nemo(myna.load(nemo_fixtures / f"{ctc_model}.nemo"), run / "other.nemo")
    assert find_model_file(run) == run / "final.nemo"
    assert myna.load(run).tokenizer is not None
    (run / "config.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="final.nemo, other.nemo"):
        myna.load(run)


# ---- NeMo restores what myna writes --------------------------------------------------------------
NEMO_SCRIPT = textwrap.dedent("""
    import json, sys, numpy as np, torch
    from nemo.collections.asr.models import ASRModel
    path, inputs = sys.argv[1], np.load(sys.argv[2])
    model = ASRModel.restore_from(path, map_location="cpu").eval()
    model.preprocessor.featurizer.dither = 0.0
    audio, lengths = torch.from_numpy(inputs["audio"]), torch.from_numpy(inputs["lengths"])
    out = {"cls": type(model).__name__}
    with torch.no_grad():
        if hasattr(model, "joint"):
            encoded, encoded_lengths = model.forward(input_signal=audio, input_signal_length=lengths)
            pred, _, _ = model.decoder(targets=torch.tensor([[5, 9, 2], [7, 1, 0]]), target_length=torch.tensor([3, 2]))
            out["joint"] = model.joint.joint(encoded.transpose(1, 2), pred.transpose(1, 2)).numpy()
        else:
            log_probs, encoded_lengths, _ = model.forward(input_signal=audio, input_signal_length=lengths)
            out["log_probs"] = log_probs.numpy()
            processed, processed_lengths = model.preprocessor(input_signal=audio, length=lengths)
            encoded, _ = model.encoder(audio_signal=processed, length=processed_lengths)
    out["encoded"] = encoded.transpose(1, 2).numpy()
    out["encoded_lengths"] = encoded_lengths.numpy()
    hyps = model.transcribe(list(sys.argv[4:]), batch_size=2)
    out["texts"] = np.array([h.text if hasattr(h, "text") else h for h in hyps])
    np.savez(sys.argv[3], **out)
""")


def restored_in_nemo(python, path, audio, lengths, wavs, tmp_path) -> dict:
    """What NeMo's restore_from of ``path`` computes on the batch, and its transcripts of ``wavs``."""
    np.savez(tmp_path / "inputs.npz", audio=audio.numpy(), lengths=lengths.numpy())
    (tmp_path / "run.py").write_text(NEMO_SCRIPT)
    done = subprocess.run([python, str(tmp_path / "run.py"), str(path), str(tmp_path / "inputs.npz"),
                           str(tmp_path / "nemo.npz"), *map(str, wavs)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(tmp_path / "nemo.npz"))


@pytest.mark.parity
def test_nemo_restores_a_saved_model_with_the_same_outputs(nemo_fixtures, nemo_python, transducer_model, tmp_path):
    # NeMo import and restore: ~20 s per call; runs only where nemo_toolkit is importable.
    model, cfg = _myna_only_model(nemo_fixtures, transducer_model)
    path = save_nemo(model, tmp_path / "out.nemo", config=cfg)
    audio, lengths = _batch(nemo_fixtures)
    wav = nemo_fixtures / "input_single.wav"
    nemo = restored_in_nemo(nemo_python, path, audio, lengths, [wav], tmp_path)
    encoded, encoded_lengths, logits = _outputs(model, audio, lengths)
    assert str(nemo["cls"]) == NEMO_MODEL_TARGETS["hybrid" if cfg.get("aux_ctc") else "rnnt"].rsplit(".", 1)[-1]
    np.testing.assert_array_equal(nemo["encoded_lengths"], encoded_lengths.numpy())
    np.testing.assert_allclose(nemo["encoded"], encoded.numpy(), atol=1e-4)
    # NeMo's CPU joint returns log-probs; myna's joint raw logits.
    np.testing.assert_allclose(nemo["joint"], torch.log_softmax(logits, -1).numpy(), atol=1e-4)
    assert nemo["texts"].tolist() == model.transcribe([wav])
