"""myna.interop."""
