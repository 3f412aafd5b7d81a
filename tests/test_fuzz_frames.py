"""Hypothesis throws arbitrary frames at one call while a neighbour call keeps working.

The properties: the server never crashes, never leaves an unhandled task exception,
keeps the fuzzed socket open for anything under the size limit (answering its pings),
closes it with 1009 above the limit, and the neighbour call is never disturbed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.fixtures.agents import EchoAgent
from tests.fixtures.threaded_server import ThreadedServer, threaded_server

pytestmark = pytest.mark.integration

LIMIT = 16 * 1024
TIMEOUT = 10.0

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)
interaction_types = st.sampled_from(
    ["response_required", "reminder_required", "update_only", "ping_pong", "call_details", "x"]
)
field_names = st.sampled_from(
    ["response_id", "transcript", "timestamp", "call", "turntaking", "words", "role", "content"]
)
shaped = st.fixed_dictionaries(
    {"interaction_type": interaction_types},
    optional={
        "response_id": st.integers(min_value=-(2**64), max_value=2**64) | json_values,
        "transcript": st.lists(
            st.fixed_dictionaries(
                {"role": st.text(max_size=10) | json_values, "content": json_values},
                optional={"words": json_values},
            ),
            max_size=4,
        )
        | json_values,
        "timestamp": json_values,
        "call": json_values,
    },
).flatmap(
    lambda base: st.dictionaries(field_names, json_values, max_size=3).map(
        lambda extra: {**extra, **base}
    )
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def broken_after_unknown_field(frame: dict[str, Any]) -> str:
    """Valid up to an unknown field, malformed after it: the codec's lenient second decode
    reads what the strict one never reached (a bug found here once)."""
    return json.dumps(frame)[:-1] + ', "x_unknown": 1, "y": tru}'


frames = st.one_of(
    json_values.map(json.dumps),
    shaped.map(json.dumps),
    shaped.map(broken_after_unknown_field),
    st.text(max_size=200),
    st.binary(max_size=64),
    st.integers(min_value=1, max_value=20_000).map(nested),
    st.integers(min_value=LIMIT - 64, max_value=LIMIT * 3).map(
        lambda n: '{"interaction_type":"update_only","transcript":[],"p":"' + "x" * n + '"}'
    ),
)


class Harness:
    def __init__(self, server: ThreadedServer) -> None:
        self.server = server
        self.connections = ExitStack()
        self.neighbour = self._open("neighbour")
        self.fuzzed = self._open("fuzzed")
        self.next_id = 1

    def _open(self, call_id: str) -> ClientConnection:
        ws = self.connections.enter_context(
            connect(f"{self.server.ws_url}/{call_id}", open_timeout=TIMEOUT, compression=None)
        )
        self._until(ws, lambda f: f.get("response_id") == 0 and f.get("content_complete"))
        return ws

    @staticmethod
    def _until(ws: ClientConnection, predicate: Any) -> dict[str, Any]:
        while True:
            data = ws.recv(timeout=TIMEOUT)
            assert isinstance(data, str), "switchboard sent a binary frame"
            frame: dict[str, Any] = msgspec.json.decode(data)
            if predicate(frame):
                return frame

    @staticmethod
    def _read_until_closed(ws: ClientConnection) -> ConnectionClosed:
        while True:
            try:
                ws.recv(timeout=TIMEOUT)
            except ConnectionClosed as closed:
                return closed

    def neighbour_still_answers(self) -> None:
        self.next_id += 1
        rid = self.next_id
        self.neighbour.send(
            json.dumps(
                {
                    "interaction_type": "response_required",
                    "response_id": rid,
                    "transcript": [{"role": "user", "content": f"check {rid}"}],
                }
            )
        )
        final = self._until(
            self.neighbour, lambda f: f.get("response_id") == rid and f.get("content_complete")
        )
        assert final["content_complete"] is True

    def fuzzed_still_open(self) -> None:
        stamp = self.next_id
        self.fuzzed.send(json.dumps({"interaction_type": "ping_pong", "timestamp": stamp}))
        self._until(
            self.fuzzed,
            lambda f: f.get("response_type") == "ping_pong" and f.get("timestamp") == stamp,
        )

    def fuzzed_closed_for_size(self) -> None:
        closed = self._read_until_closed(self.fuzzed)
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1009
        self.fuzzed = self._open("fuzzed")


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    with threaded_server(
        EchoAgent(), call_details=False, max_frame_bytes=LIMIT, first_chunk_timeout_ms=5000
    ) as server:
        h = Harness(server)
        yield h
        h.connections.close()
    assert server.loop_errors == [], server.loop_errors


# The example count comes from the hypothesis profile (tests/conftest.py): a fixed set in CI,
# a long random search under ``make fuzz``.
@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frame=frames)
# Frames that once dropped the socket (1006): JSON broken after an unknown field, and a 2 KB
# frame nested 1,000 deep (a RecursionError inside the decoder).
@example(frame='{"transcript": 1, "interaction_type": "update_only", "x": tru}')
@example(frame='{"interaction_type":"call_details","call":{"a":' + "[" * 1000 + "]" * 1000 + "}}")
@example(frame='{"interaction_type":"update_only","transcript":' + "[" * 1000 + "]" * 1000 + "}")
def test_arbitrary_frames_never_harm_the_server_or_a_neighbour(
    harness: Harness, frame: str | bytes
) -> None:
    harness.fuzzed.send(frame)
    if len(frame) > LIMIT:
        harness.fuzzed_closed_for_size()
    else:
        harness.fuzzed_still_open()
    harness.neighbour_still_answers()
    assert harness.server.loop_errors == []
