"""Is anything listening at a server URL? Asked once before a run, so a wrong URL is one
line ("connection refused") instead of seconds of retries and a report of zeros."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

DEFAULT_PORTS = {"ws": 80, "http": 80, "wss": 443, "https": 443}


def unreachable(url: str, timeout_s: float) -> str | None:
    """Why a TCP connection to ``url``'s host and port fails, or ``None`` when it opens."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return f"not a ws:// or wss:// URL: {url!r}"
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as err:
        return f"bad port ({err})"
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return None
    except ConnectionRefusedError:
        return f"connection refused at {parts.hostname}:{port}"
    except socket.gaierror as err:
        return f"cannot resolve {parts.hostname} ({err.strerror})"
    except TimeoutError:
        return f"no answer from {parts.hostname}:{port} within {timeout_s:g} s"
    except OSError as err:
        return f"{parts.hostname}:{port}: {err.strerror or err}"
