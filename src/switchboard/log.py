"""Structured logging: one stream, one format, one level, and a sink that can never fail.

Every line, ours (``structlog``) and the libraries' (uvicorn, asyncio, the HTTP clients,
through the standard library), goes through a single handler on standard error, rendered
once: JSON (``log_json``) or console text, filtered by ``log_level``.

What may not change:

* Loggers are lazy: ``get_logger`` at import time binds nothing, so a module logger obeys
  the settings ``configure`` applies later.
* Logging never breaks the server. A sink that fails (a closed pipe under
  ``switchboard serve | head``) is dropped: the line is counted in ``dropped_lines()`` and
  nothing is raised or printed. The broken descriptor is pointed at ``/dev/null`` so the
  interpreter's own flush at exit cannot fail either.
* No frame contents beyond a short excerpt: tracebacks carry no local variables, and
  every string value is cut to ``MAX_VALUE_CHARS`` (tracebacks to their last
  ``MAX_TRACEBACK_CHARS``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_CHATTY = ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "aiohttp")
#: uvicorn's per-connection lines; the call socket logs what matters about a call itself.
_PER_CONNECTION = frozenset(
    (
        '%s - "WebSocket %s" [accepted]',
        '%s - "WebSocket %s" %d',
        "connection open",
        "connection closed",
    )
)

MAX_VALUE_CHARS = 200
MAX_TRACEBACK_CHARS = 4000
EXCERPT_CHARS = 64

_dropped = 0


def dropped_lines() -> int:
    """Log lines lost to a failing sink since the process started."""
    return _dropped


class SafeStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that drops (and counts) what the stream cannot take."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.broken = False

    def emit(self, record: logging.LogRecord) -> None:
        global _dropped
        if self.broken:
            _dropped += 1
            return
        try:
            self.stream.write(self.format(record) + self.terminator)
            self.stream.flush()
        except Exception as err:
            _dropped += 1
            if isinstance(err, OSError):
                self.broken = True
                _silence(self.stream)

    def handleError(self, record: logging.LogRecord) -> None:
        global _dropped
        _dropped += 1


def _silence(stream: TextIO) -> None:
    """Point a dead stream's descriptor at /dev/null (buffered bytes then go nowhere)."""
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
    except (OSError, ValueError):
        pass


class _PerConnectionFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in _PER_CONNECTION


def _truncate(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    for key, value in event.items():
        if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
            if key == "exception":
                if len(value) > MAX_TRACEBACK_CHARS:
                    event[key] = "..." + value[-MAX_TRACEBACK_CHARS:]
            else:
                event[key] = f"{value[:MAX_VALUE_CHARS]}... ({len(value)} chars)"
    return event


def excerpt(data: str | bytes) -> str:
    """The first few characters of untrusted input, safe to log."""
    head = data[:EXCERPT_CHARS]
    text = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
    text = text.encode("utf-8", "backslashreplace").decode()
    return text + ("..." if len(data) > EXCERPT_CHARS else "")


def configure(level: str = "info", json: bool = False, stream: TextIO | None = None) -> None:
    """Set up logging once per process (the CLI calls it; tests rely on the defaults)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning or error")
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    renderer: Any
    if json:
        renderer = structlog.processors.JSONRenderer()
    else:
        out = stream or sys.stderr
        renderer = structlog.dev.ConsoleRenderer(
            colors=_isatty(out), exception_formatter=structlog.dev.plain_traceback
        )
    finish: list[Any] = [structlog.processors.format_exc_info, _truncate]
    if not json:
        finish = [_truncate]  # the console renderer formats the traceback itself
    handler = SafeStreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *finish,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        # uvicorn may have attached its own handlers; everything goes through ours.
        library = logging.getLogger(name)
        library.handlers.clear()
        library.setLevel(logging.NOTSET)  # the root's level is the only filter
        library.propagate = True
    uvicorn_error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _PerConnectionFilter) for f in uvicorn_error.filters):
        uvicorn_error.addFilter(_PerConnectionFilter())
    # HTTP clients log every request at INFO: one line per LLM call, per turn. That is
    # debug detail, and formatting it costs several percent of a turn's CPU.
    for name in _CHATTY:
        logging.getLogger(name).setLevel(
            logging.NOTSET if numeric <= logging.DEBUG else logging.WARNING
        )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def _defaults() -> None:
    """Until ``configure`` runs (library use, tests): stdlib loggers, level info, plain
    console lines without local variables, nothing cached so ``configure`` still applies."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _truncate,
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            ),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


_defaults()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


def get_logger(name: str, **bound: Any) -> Any:
    """A lazy logger named ``name`` (with extra keys, e.g. ``call_id``): nothing is bound
    until its first line, so one made at import obeys ``configure``."""
    return structlog.get_logger(name, **bound)


class LogThrottle:
    """Per-call rate limit for repeated identical warnings (10,000 garbage frames must not
    be 10,000 lines).

    ``allow(key)`` says whether to log this occurrence: the first ``burst`` of a key per
    ``window_s`` pass; the rest are counted, and the next line that passes (or
    ``suppressed()`` at the end of the call) reports how many were left out.
    """

    __slots__ = ("_burst", "_keys", "_window_s")

    def __init__(self, burst: int = 5, window_s: float = 60.0) -> None:
        self._burst = burst
        self._window_s = window_s
        # key -> [window start, passed in window, suppressed since the last passed line]
        self._keys: dict[str, list[float]] = {}

    def allow(self, key: str) -> int | None:
        """``None``: suppress this line. Otherwise log it, adding the returned count of
        lines suppressed before it when that is not zero."""
        now = time.monotonic()
        entry = self._keys.get(key)
        if entry is None:
            self._keys[key] = [now, 1, 0]
            return 0
        if now - entry[0] >= self._window_s:
            entry[0] = now
            entry[1] = 0
        if entry[1] < self._burst:
            entry[1] += 1
            suppressed = int(entry[2])
            entry[2] = 0
            return suppressed
        entry[2] += 1
        return None

    def suppressed(self) -> dict[str, int]:
        """Lines suppressed and not yet reported, per key; resets the counts."""
        out = {key: int(entry[2]) for key, entry in self._keys.items() if entry[2]}
        for entry in self._keys.values():
            entry[2] = 0
        return out
