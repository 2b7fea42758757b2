"""myna: train, fine-tune and run speech recognisers in PyTorch."""

__version__ = "0.1.0"
