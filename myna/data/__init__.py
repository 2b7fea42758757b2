"""myna.data."""
