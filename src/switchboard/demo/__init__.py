"""``switchboard demo``: a whole profile started from real processes, played and judged.

This module stays light (the command line imports it at start-up); ``run.py`` does the work.
"""

from pathlib import Path


def demo_report_path(profile: str) -> Path:
    """Each profile's demo keeps its own report, so running all three leaves all three."""
    return Path("reports") / f"demo-{profile}.html"
