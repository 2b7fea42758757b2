"""myna.decoding."""
