"""Shared pytest fixtures: the location of ../shared (data) and of the parity fixtures.

Parity tests (``@pytest.mark.parity``) read their fixture root from ``MYNA_FIXTURES`` (default
``../shared/fixtures``) and every expected value, size and vocabulary from the files there, so
another fixture set of the same layout can be swapped in::

    MYNA_FIXTURES=/path/to/other/fixtures pytest -m parity

A test that takes one of the arguments below is run once per NeMo fixture model of that kind,
as ``nemo/index.json`` and each model's ``<name>_model_config.yaml`` describe them:
``nemo_model`` (all), ``transducer_model`` (RNN-T and hybrid), ``hybrid_model``,
``ctc_model`` (CTC only), ``ctc_head_model`` (a CTC head: CTC and hybrid), ``conformer_model``
and ``contextnet_model`` (by encoder). ``dle_model`` and ``hf_w2v_model`` run once per model that
``dle_hourglass/index.json`` / ``hf_wav2vec2/index.json`` list.
"""

import json
import os
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = (REPO_ROOT / ".." / "shared").resolve()
FIXTURES_DIR = Path(os.environ.get("MYNA_FIXTURES") or SHARED_DIR / "fixtures").resolve()


def _nemo_fixture_kinds() -> dict[str, set[str]]:
    """Fixture model name -> the kinds it counts as (empty when the fixtures are absent)."""
    index = FIXTURES_DIR / "nemo" / "index.json"
    if not index.is_file():
        return {}
    kinds = {}
    for name in json.loads(index.read_text())["models"]:
        cfg = yaml.safe_load((FIXTURES_DIR / "nemo" / f"{name}_model_config.yaml").read_text())
        encoder = str(cfg["encoder"]["_target_"]).rsplit(".", 1)[-1]
        has_joint, has_aux = bool(cfg.get("joint")), bool(cfg.get("aux_ctc"))
        kind = {"nemo_model"}
        if has_joint:
            kind.add("transducer_model")
        if has_joint and has_aux:
            kind.add("hybrid_model")
        if not has_joint:
            kind.add("ctc_model")
        if has_aux or not has_joint:
            kind.add("ctc_head_model")
        if encoder == "ConformerEncoder":
            kind.add("conformer_model")
        if encoder == "ConvASREncoder":
            kind.add("contextnet_model")
        kinds[name] = kind
    return kinds


NEMO_FIXTURE_KINDS = _nemo_fixture_kinds()
_KIND_ARGUMENTS = ("nemo_model", "transducer_model", "hybrid_model", "ctc_model", "ctc_head_model",
                   "conformer_model", "contextnet_model")


# Tests taking one of these arguments run once per model listed in that set's index.json.
_MODEL_LISTS = {"dle_model": "dle_hourglass", "hf_w2v_model": "hf_wav2vec2", "nemo_ssl_model": "nemo_ssl"}


def _listed_models(set_name: str) -> list[str]:
    try:
        return sorted(json.loads((FIXTURES_DIR / set_name / "index.json").read_text())["models"])
    except (OSError, ValueError, KeyError):
        return []


def pytest_generate_tests(metafunc):
    for argument in _KIND_ARGUMENTS:
        if argument in metafunc.fixturenames:
            names = sorted(n for n, kinds in NEMO_FIXTURE_KINDS.items() if argument in kinds)
            metafunc.parametrize(argument, names, scope="module")
    for argument, set_name in _MODEL_LISTS.items():
        if argument in metafunc.fixturenames:
            names = _listed_models(set_name)
            metafunc.parametrize(argument, names or [pytest.param(None, marks=pytest.mark.skip(
                reason=f"no {set_name}/index.json under {FIXTURES_DIR}"))])


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The workplace's shared folder (fixtures/, data/); tests that need it skip without it."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared folder not found at {SHARED_DIR}")
    return SHARED_DIR


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The parity fixture root: $MYNA_FIXTURES, default ../shared/fixtures."""
    if not FIXTURES_DIR.is_dir():
        pytest.skip(f"parity fixtures not found at {FIXTURES_DIR} (set MYNA_FIXTURES)")
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def nemo_fixtures(fixtures_dir: Path) -> Path:
    """Folder of NeMo parity fixtures (.nemo archives, reference .npz files)."""
    return fixtures_dir / "nemo"


@pytest.fixture(scope="session")
def fsdd_dir(shared_dir: Path) -> Path:
    """Free Spoken Digit Dataset (8 kHz real speech)."""
    return shared_dir / "data" / "fsdd"


def write_wav_manifest(root: Path, name: str, n: int, seed: int = 0, sample_rate: int = 8000) -> str:
    """n short noise wav files (0.05-0.3 s, all of different lengths) under root/name and their
    manifest root/name.json (relative paths, texts "u 0", "u 1", ...)."""
    import json

    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    (root / name).mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        samples = int(sample_rate * (0.05 + 0.25 * rng.random()))
        sf.write(root / name / f"{i}.wav", (0.1 * rng.standard_normal(samples)).astype(np.float32), sample_rate,
                 subtype="PCM_16")
        lines.append(json.dumps({"audio_filepath": f"{name}/{i}.wav", "duration": samples / sample_rate,
                                 "text": f"u {i}"}))
    manifest = root / f"{name}.json"
    manifest.write_text("\n".join(lines) + "\n")
    return str(manifest)


@pytest.fixture(scope="session")
def wav_manifest():
    """:func:`write_wav_manifest`: ``wav_manifest(root, name, n, seed=0, sample_rate=8000) -> manifest path``."""
    return write_wav_manifest


@pytest.fixture(scope="session")
def nemo_python() -> str:
    """An interpreter with nemo_toolkit: this one if it imports nemo, else $MYNA_NEMO_PYTHON."""
    import subprocess
    import sys

    candidates = [sys.executable] + ([os.environ["MYNA_NEMO_PYTHON"]] if os.environ.get("MYNA_NEMO_PYTHON") else [])
    for python in candidates:
        probe = subprocess.run([python, "-c", "import nemo.collections.asr"], capture_output=True)
        if probe.returncode == 0:
            return python
    pytest.skip("nemo_toolkit is not importable (set MYNA_NEMO_PYTHON to an interpreter that has it)")


_NEMO_RESTORE_SCRIPT = """
import sys, numpy as np, torch
from nemo.collections.asr.models import ASRModel
path, inputs, tokens = sys.argv[1], np.load(sys.argv[2]), None
model = ASRModel.restore_from(path, map_location="cpu").eval()
model.preprocessor.featurizer.dither = 0.0
audio, lengths = torch.from_numpy(inputs["audio"]), torch.from_numpy(inputs["lengths"])
out = {"cls": type(model).__name__}
with torch.no_grad():
    features, feature_lengths = model.preprocessor(input_signal=audio, length=lengths)
    encoded, encoded_lengths = model.encoder(audio_signal=features, length=feature_lengths)
    if hasattr(model, "joint"):
        targets = torch.from_numpy(inputs["tokens"])
        pred, _, _ = model.decoder(targets=targets, target_length=torch.from_numpy(inputs["token_lengths"]))
        out["joint"] = model.joint.joint(encoded.transpose(1, 2), pred.transpose(1, 2)).numpy()
    if hasattr(model, "ctc_decoder"):
        out["ctc_log_probs"] = model.ctc_decoder(encoder_output=encoded).numpy()
    elif not hasattr(model, "joint"):
        out["ctc_log_probs"] = model.decoder(encoder_output=encoded).numpy()
out["encoded"] = encoded.transpose(1, 2).numpy()
out["encoded_lengths"] = encoded_lengths.numpy()
np.savez(sys.argv[3], **out)
"""


@pytest.fixture(scope="session")
def nemo_restores(nemo_python, tmp_path_factory):
    """``check(path, model, audio, lengths) -> NeMo's class name``: NeMo 3.0's ``restore_from(path)``
    computes what ``model`` computes on the (B, L) batch: encoder output and lengths, the joint's
    log-probs on fixed tokens (Transducers) and the CTC head's log-probs, each to 1e-4."""
    import subprocess

    import numpy as np
    import torch

    def check(path, model, audio: torch.Tensor, lengths: torch.Tensor) -> str:
        tmp = tmp_path_factory.mktemp("nemo_restore")
        tokens = torch.tensor([[1, 2, 3], [4, 5, 0]])[: audio.size(0)] % model.tokenizer.vocab_size
        token_lengths = torch.tensor([3, 2])[: audio.size(0)]
        np.savez(tmp / "inputs.npz", audio=audio.numpy(), lengths=lengths.numpy(), tokens=tokens.numpy(),
                 token_lengths=token_lengths.numpy())
        (tmp / "restore.py").write_text(_NEMO_RESTORE_SCRIPT)
        done = subprocess.run([nemo_python, str(tmp / "restore.py"), str(path), str(tmp / "inputs.npz"),
                               str(tmp / "nemo.npz")], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        nemo = dict(np.load(tmp / "nemo.npz"))
        model.eval()
        with torch.no_grad():
            features, feature_lengths = model.featurize(audio, lengths)
            encoded, encoded_lengths = model.encoder(features, feature_lengths)
            np.testing.assert_array_equal(nemo["encoded_lengths"], encoded_lengths.numpy())
            np.testing.assert_allclose(nemo["encoded"], encoded.numpy(), atol=1e-4)
            if "joint" in nemo:  # NeMo's CPU joint returns log-probs; myna's joint raw logits
                pred, _ = model.decoder(tokens, token_lengths)
                log_probs = torch.log_softmax(model.joint(encoded, pred), -1)
                np.testing.assert_allclose(nemo["joint"], log_probs.numpy(), atol=1e-4)
            if "ctc_log_probs" in nemo:
                np.testing.assert_allclose(nemo["ctc_log_probs"], model.ctc_log_probs(encoded).numpy(), atol=1e-4)
        return str(nemo["cls"])

    return check


def _fixture_set(root: Path, name: str) -> Path:
    folder = root / name
    if not folder.is_dir():
        pytest.skip(f"fixture set {name} not found under {root}")
    return folder


@pytest.fixture(scope="session")
def hf_w2v_fixtures(fixtures_dir: Path) -> Path:
    """Hugging Face wav2vec 2.0 folders and references (``hf_wav2vec2/``)."""
    return _fixture_set(fixtures_dir, "hf_wav2vec2")


@pytest.fixture(scope="session")
def dle_fixtures(fixtures_dir: Path) -> Path:
    """NVIDIA DLE wav2vec 2.0 / Hourglass state dicts and references (``dle_hourglass/``)."""
    return _fixture_set(fixtures_dir, "dle_hourglass")


@pytest.fixture(scope="session")
def nemo_ssl_fixtures(fixtures_dir: Path) -> Path:
    """NeMo SSL (SpeechEncDecSelfSupervisedModel) .nemo files and references (``nemo_ssl/``)."""
    return _fixture_set(fixtures_dir, "nemo_ssl")
