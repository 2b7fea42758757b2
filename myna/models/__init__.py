"""myna.models."""
