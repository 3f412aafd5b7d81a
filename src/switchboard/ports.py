"""Listening ports, taken before anything else starts.

A server that loads its agent, opens Redis and logs "listening" before it finds its port
taken has already misled whoever reads the log; a second cluster on the same port is
worse: with ``SO_REUSEPORT`` the kernel splits new calls between two unrelated stacks.
So every entry point (``serve``, ``cluster``, the services) binds or checks its port
first, without ``SO_REUSEPORT``, and refuses to start with one line naming the port.
"""

from __future__ import annotations

import errno
import socket


class PortError(RuntimeError):
    """A port we must listen on cannot be had; the message is one line naming it."""


class PortInUse(PortError):
    """Someone else listens on the port."""

    def __init__(self, host: str, port: int, holder: str | None = None) -> None:
        self.host = host
        self.port = port
        self.holder = holder
        who = holder or "another process"
        super().__init__(f"port {port} on {host} is already in use by {who}")


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``, ready for a server to ``listen`` on.

    ``SO_REUSEADDR`` lets a restart bind over its predecessor's TIME_WAIT connections;
    without ``SO_REUSEPORT`` a live listener on the port is an error, never a share. The
    socket is inheritable so uvicorn (or a child) can serve it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise PortInUse(host, port) from None
        raise PortError(f"cannot listen on port {port} on {host}: {err.strerror}") from None
    sock.set_inheritable(True)
    return sock


def ensure_free(host: str, port: int, holder: str | None = None) -> None:
    """Raise ``PortInUse`` (naming ``holder`` when known) if ``host:port`` cannot be bound."""
    try:
        bind_listener(host, port).close()
    except PortInUse:
        raise PortInUse(host, port, holder) from None
