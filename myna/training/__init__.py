"""myna.training."""
