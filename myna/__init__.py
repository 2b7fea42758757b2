"""myna: train, fine-tune and run speech recognisers in PyTorch."""

__version__ = "0.1.0"


def load(path, map_location="cpu"):
    """Load a model from a ``.nemo`` archive (NeMo's or myna's own) or a ``myna train`` run folder
    (its final ``<name>.nemo``); returns it in eval mode.

    >>> model = myna.load("exp/conformer_ctc")
    >>> model.transcribe(["a.wav", "b.flac"])
    """
    from myna.interop.nemo import load_nemo

    return load_nemo(path, map_location=map_location)
