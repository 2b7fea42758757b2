"""myna.text."""
