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
