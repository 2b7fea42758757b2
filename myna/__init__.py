"""myna: train, fine-tune and run speech recognisers in PyTorch."""

__version__ = "0.1.0"


def load(path):
    """Load a model from a ``.nemo`` archive (NeMo's or myna's own); returns it in eval mode."""
    from myna.models.io import load_model

    return load_model(path)
