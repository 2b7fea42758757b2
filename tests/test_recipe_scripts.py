"""Recipe scripts name a recipe that exists and only overrides keys it knows."""

import re
from pathlib import Path

import pytest

from myna.config import load_config

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((REPO / "recipes").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_recipe_script_overrides_are_known_keys(script):
    text = script.read_text()
    recipe = re.search(r"myna train (conf/\S+\.yaml)", text).group(1)
    overrides = []
    for key, value in re.findall(r"^\s+([a-z_][\w.]*)=(\S+?)\s*\\?$", text, re.M):
        overrides.append(f"{key}={value if '$' not in value else 'placeholder'}")
    for key, value in re.findall(r" ((?:trainer|exp_manager)\.[\w.]+)=(\S+)", text):
        overrides.append(f"{key}={value if '$' not in value else 'placeholder'}")
    assert overrides, script
    load_config(REPO / recipe, overrides)  # raises on any unknown key


def test_every_issue_recipe_exists():
    names = {p.name for p in SCRIPTS}
    assert {"run_librispeech.sh", "run_common_voice_9.sh", "run_tedlium.sh", "run_switchboard.sh",
            "run_dummy.sh", "run_fsdd.sh"} <= names
