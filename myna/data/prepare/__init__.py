"""myna.data.prepare."""
