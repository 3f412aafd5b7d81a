"""The opening handshake's decisions, pure: which upgrade requests are refused and why.
The same requests over real sockets are in ``test_call_socket_wire.py``."""

from __future__ import annotations

from http import HTTPStatus

from switchboard.server.handshake import handshake_problem, refusal, route, switching_protocols
from switchboard.server.socket_access import parse_networks

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
GOOD = [
    (b"connection", b"Upgrade"),
    (b"upgrade", b"websocket"),
    (b"sec-websocket-version", b"13"),
    (b"sec-websocket-key", KEY),
]
ANY = parse_networks([])  # no allowlist: any address


def test_a_valid_handshake_is_accepted_with_rfc_6455s_accept_key() -> None:
    assert handshake_problem("GET", GOOD) is None
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in switching_protocols(GOOD)


def test_a_repeated_key_header_is_not_a_handshake() -> None:
    problem = handshake_problem("GET", [*GOOD, (b"sec-websocket-key", KEY)])
    assert problem == (HTTPStatus.BAD_REQUEST, "invalid Sec-WebSocket-Key")


def test_another_version_is_told_which_one_we_speak() -> None:
    headers = [h if h[0] != b"sec-websocket-version" else (h[0], b"8") for h in GOOD]
    status, _ = handshake_problem("GET", headers) or (None, "")
    assert status is HTTPStatus.UPGRADE_REQUIRED
    assert b"sec-websocket-version: 13\r\n" in refusal(HTTPStatus.UPGRADE_REQUIRED, "x")


def test_a_post_is_not_a_handshake() -> None:
    assert handshake_problem("POST", GOOD) == (
        HTTPStatus.BAD_REQUEST,
        "a WebSocket handshake is a GET",
    )


def test_routes_without_a_secret() -> None:
    assert route("/llm-websocket/call-1", b"", "10.0.0.1", None, ANY) == ("call-1", None)
    assert route("/other/call-1", b"", "10.0.0.1", None, ANY) == (None, "bad_path")
    assert route("/llm-websocket/a/b", b"", "10.0.0.1", None, ANY) == (None, "bad_path")
    assert route("/llm-websocket/bad id", b"", "10.0.0.1", None, ANY) == (None, "bad_call_id")


def test_the_secret_is_taken_from_the_path_or_the_query() -> None:
    assert route("/llm-websocket/s3cret/c", b"", None, "s3cret", ANY) == ("c", None)
    assert route("/llm-websocket/c", b"token=s3cret", None, "s3cret", ANY) == ("c", None)
    assert route("/llm-websocket/wrong/c", b"", None, "s3cret", ANY) == (None, "unauthorized")
    assert route("/llm-websocket/c", b"", None, "s3cret", ANY) == (None, "unauthorized")


def test_an_address_outside_the_allowlist_is_forbidden() -> None:
    only = parse_networks(["100.20.5.228"])
    assert route("/llm-websocket/c", b"", "100.20.5.228", None, only) == ("c", None)
    assert route("/llm-websocket/c", b"", "10.0.0.1", None, only) == (None, "forbidden_ip")
