"""Structured logging: ``structlog`` over the standard library, ``call_id`` bound per call."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_CHATTY = ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "aiohttp")


def configure(level: str = "info", json: bool = False) -> None:
    """Set up logging once per process (the CLI calls it; tests rely on the defaults)."""
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper(), force=True)
    if level.lower() != "debug":
        # HTTP clients log every request at INFO: one line per LLM call, per turn. That is
        # debug detail, and formatting it costs several percent of a turn's CPU.
        for name in _CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str, **bound: Any) -> Any:
    """A logger bound to ``name`` (and any extra keys, e.g. ``call_id``)."""
    return structlog.get_logger(name).bind(**bound)
