"""Logging obeys its settings and can never break the process that logs."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from switchboard import log


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    log._defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# Made at import time, before any configure(), as every module logger is.
_module_logger = log.get_logger("tests.module", component="x")


@pytest.mark.usefixtures("restore_logging")
def test_a_logger_made_before_configure_obeys_it() -> None:
    out = io.StringIO()
    log.configure("warning", json=True, stream=out)
    _module_logger.info("not at warning")
    _module_logger.debug("not at warning either")
    _module_logger.warning("kept", detail=1)
    logging.getLogger("uvicorn.error").info("library info, filtered too")
    logging.getLogger("uvicorn.error").warning("library warning")
    assert lines(out) == [
        {
            "component": "x",
            "detail": 1,
            "event": "kept",
            "level": "warning",
            "logger": "tests.module",
            "timestamp": lines(out)[0]["timestamp"],
        },
        {
            "event": "library warning",
            "level": "warning",
            "logger": "uvicorn.error",
            "timestamp": lines(out)[1]["timestamp"],
        },
    ]


@pytest.mark.usefixtures("restore_logging")
def test_a_traceback_is_one_json_field_without_frame_contents() -> None:
    out = io.StringIO()
    log.configure("info", json=True, stream=out)
    secret_frame = "caller said " + "x" * 5000

    def fails(data: str) -> None:
        raise ValueError("bad frame")

    try:
        fails(secret_frame)
    except ValueError:
        log.get_logger("tests.tb").exception("failed", frame=secret_frame)
    (line,) = lines(out)
    assert "ValueError: bad frame" in line["exception"]
    assert "x" * 300 not in out.getvalue()  # neither the local nor the field, beyond an excerpt
    assert len(line["frame"]) < 300


@pytest.mark.usefixtures("restore_logging")
def test_a_broken_sink_drops_lines_and_never_raises() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away: `switchboard serve | head -5`
    stream = os.fdopen(write_end, "w")
    try:
        log.configure("info", json=True, stream=stream)
        before = log.dropped_lines()
        logger = log.get_logger("tests.broken")
        for n in range(3):
            logger.warning("into a closed pipe", n=n)
        logging.getLogger("asyncio").error("a library line too")
        assert log.dropped_lines() - before == 4
    finally:
        stream.close()


def test_the_throttle_passes_a_burst_then_counts() -> None:
    throttle = log.LogThrottle(burst=3, window_s=3600)
    passed = [throttle.allow("malformed") for _ in range(10)]
    assert passed == [0, 0, 0, None, None, None, None, None, None, None]
    assert throttle.allow("binary") == 0  # keys are independent
    assert throttle.suppressed() == {"malformed": 7}
    assert throttle.suppressed() == {}


def test_the_throttle_reports_suppressed_lines_on_the_next_window() -> None:
    throttle = log.LogThrottle(burst=1, window_s=0)
    assert throttle.allow("k") == 0
    # A zero window: every line opens a new one, so nothing is ever suppressed.
    assert throttle.allow("k") == 0


def test_an_excerpt_is_short_and_printable() -> None:
    assert log.excerpt("abc") == "abc"
    long = log.excerpt("y" * 1000)
    assert long == "y" * log.EXCERPT_CHARS + "..."
    assert log.excerpt(b"\xff\xfe" + b"z" * 10) == "\ufffd\ufffd" + "z" * 10
    assert log.excerpt("\ud800x") == "\\ud800x"


@pytest.mark.usefixtures("restore_logging")
def test_uvicorn_per_connection_lines_are_dropped() -> None:
    out = io.StringIO()
    log.configure("info", json=True, stream=out)
    uvicorn = logging.getLogger("uvicorn.error")
    uvicorn.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", "/llm-websocket/c1")
    uvicorn.info("connection open")
    uvicorn.info("connection closed")
    uvicorn.info("Started server process [%d]", 1)
    assert [line["event"] for line in lines(out)] == ["Started server process [1]"]
