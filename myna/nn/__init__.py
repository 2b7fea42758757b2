"""myna.nn."""
