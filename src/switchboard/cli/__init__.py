"""The ``switchboard`` command: one module per verb, each a thin shell that parses options
and calls into the package that owns the work (``app.py`` puts them together)."""

from switchboard.cli.app import app, main
from switchboard.cli.demo import demo_report_path

__all__ = ["app", "demo_report_path", "main"]
