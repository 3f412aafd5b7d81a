"""The socket as a session sees it, and the errors that cross that line.

``server.call_socket.CallSocket`` is the real one; tests use an in-memory one
(``tests/fixtures/memory_transport.py``). A session never touches anything else of the
connection, so everything it decides can be exercised without a socket.
"""

from __future__ import annotations

from typing import Protocol

#: WebSocket close code for a frame above the size limit ("message too big").
CLOSE_TOO_BIG = 1009


class Transport(Protocol):
    """The socket as the session sees it (``server.call_socket.CallSocket``)."""

    def send_now(self, text: str) -> None:
        """Write one text frame without waiting; raises once the socket is closing."""
        ...

    async def send_text(self, text: str) -> None:
        """``send_now``, then wait while the peer is slow to read (backpressure)."""
        ...

    def close(self, code: int) -> None:
        """Start the closing handshake; the server ends the session when it completes."""
        ...

    def abort(self) -> None:
        """Drop the connection without a close frame (Retell sees 1006 and reconnects)."""
        ...


class SocketGone(Exception):
    """The transport failed under a send: stop the generation quietly."""


class CallGone(RuntimeError):
    """A command for a call whose socket here is closed, or was taken by a newer claim."""
