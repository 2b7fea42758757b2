"""The recipes installed with the package (``myna/conf/*.yaml``), addressable by name.

``myna train contextnet_rnnt_dummy`` finds ``myna/conf/contextnet_rnnt_dummy.yaml`` wherever myna
is installed; a path to a YAML file (``conf/x.yaml``, ``my_recipe.yaml``) is used as written. In a
source checkout ``conf/`` is a link to ``myna/conf/``, so the README's ``conf/NAME.yaml`` paths work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["RECIPE_DIR", "Recipe", "describe", "list_recipes", "recipe_size", "resolve_recipe"]

RECIPE_DIR = Path(__file__).resolve().parent / "conf"


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    summary: str  # the first comment line of the file


def _summary(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def list_recipes() -> list[Recipe]:
    """The installed recipes, sorted by name."""
    return [Recipe(p.stem, p, _summary(p)) for p in sorted(RECIPE_DIR.glob("*.yaml"))]


def resolve_recipe(name_or_path: str | Path) -> Path:
    """An existing file path as given; otherwise an installed recipe's name (with or without
    ``.yaml``, with or without a leading ``conf/``). Raises ValueError listing the names."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if str(path.parent) in (".", "conf") and (RECIPE_DIR / f"{stem}.yaml").is_file():
        return RECIPE_DIR / f"{stem}.yaml"
    names = ", ".join(r.name for r in list_recipes())
    raise ValueError(f"recipe not found: {name_or_path} (not a file, nor an installed recipe: {names}; "
                     "see `myna recipes`)")


def recipe_size(recipe: Recipe) -> tuple[float, str]:
    """(parameters, model class) of a recipe's model, built on the meta device (no memory, no
    weights); the vocabulary is the recipe's ``model.tokenizer.vocab_size``."""
    import torch

    from myna.config import load_config
    from myna.interop.adapter import build_model

    cfg = load_config(recipe.path)
    if not cfg.model.encoder:  # fine-tuning recipes take the architecture from the checkpoint
        return float("nan"), "from init_from_nemo_model"

    class _Vocab:
        vocab_size = int(cfg.model.tokenizer.vocab_size)

    with torch.device("meta"):
        model = build_model(cfg.model, _Vocab())
    return float(sum(p.numel() for p in model.parameters())), type(model).__name__


def describe(recipe: Recipe) -> dict:
    """A recipe's name, size and summary for ``myna recipes``."""
    params, kind = recipe_size(recipe)
    raw = yaml.safe_load(recipe.path.read_text(encoding="utf-8")) or {}
    vocab = (raw.get("model") or {}).get("tokenizer", {}).get("vocab_size")
    return {"name": recipe.name, "parameters": params, "model": kind, "vocab_size": vocab,
            "summary": recipe.summary, "path": str(recipe.path)}
