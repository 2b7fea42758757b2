"""myna: train, fine-tune and run speech recognisers in PyTorch."""

__version__ = "0.1.0"


def load(path, map_location="cpu"):
    """Load a model, in eval mode, from a ``.nemo`` archive (NeMo's or myna's own), a ``myna train``
    or ``myna pretrain`` run folder (its final ``<name>.nemo``), a Hugging Face wav2vec 2.0
    folder (``config.json`` + weights) or a fairseq / NVIDIA DLE wav2vec 2.0 checkpoint (``.pt``).

    >>> model = myna.load("exp/conformer_ctc")
    >>> model.transcribe(["a.wav", "b.flac"])
    >>> myna.load("facebook-wav2vec2-base-960h/").transcribe(["a.wav"])
    """
    from pathlib import Path

    from myna.interop.fairseq import is_fairseq_checkpoint, load_fairseq
    from myna.interop.hf import is_hf_folder, load_hf
    from myna.interop.nemo import load_nemo

    if Path(path).is_dir() and is_hf_folder(path):
        return load_hf(path, map_location=map_location)
    if is_fairseq_checkpoint(path):
        return load_fairseq(path, map_location=map_location)
    return load_nemo(path, map_location=map_location)
