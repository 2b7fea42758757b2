"""Reading and writing .nemo archives."""

import tarfile

import pytest
import torch

from myna.interop.nemo import NemoFormatError, read_nemo, write_nemo


def test_fixture_archive_reads_config_weights_and_tokenizer(nemo_fixtures):
    archive = read_nemo(nemo_fixtures / "conformer_rnnt_bpe.nemo")
    assert archive.config["target"].endswith("EncDecRNNTBPEModel")
    assert archive.state_dict["preprocessor.featurizer.fb"].shape == (1, 80, 257)
    model_ref = archive.config["tokenizer"]["model_path"]
    assert model_ref.startswith("nemo:") and model_ref[5:] in archive.artifacts


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
    with pytest.raises(NemoFormatError, match="x.nemo: not a tar"):
        read_nemo(not_tar)
    no_weights = tmp_path / "y.nemo"
    with tarfile.open(no_weights, "w") as tar:
        tar.add(not_tar, arcname="./model_config.yaml")
    with pytest.raises(NemoFormatError, match="y.nemo: no model_weights.ckpt"):
        read_nemo(no_weights)
    with pytest.raises(NemoFormatError, match="no such file"):
        read_nemo(tmp_path / "missing.nemo")
