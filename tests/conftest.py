"""Shared pytest fixtures: the location of ../shared (data and parity fixtures)."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = (REPO_ROOT / ".." / "shared").resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The workplace's shared folder (fixtures/, data/); tests that need it skip without it."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared folder not found at {SHARED_DIR}")
    return SHARED_DIR


@pytest.fixture(scope="session")
def nemo_fixtures(shared_dir: Path) -> Path:
    """Folder of NeMo parity fixtures (.nemo archives, reference .npz files)."""
    return shared_dir / "fixtures" / "nemo"


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
