"""``switchboard demo``: a whole profile started from real processes, played and judged."""
