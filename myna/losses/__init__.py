"""myna.losses."""
