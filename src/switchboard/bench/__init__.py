"""``switchboard bench``: turns per server core and latency percentiles, per case and profile."""
