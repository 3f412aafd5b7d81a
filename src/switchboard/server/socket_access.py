"""Who may open a call socket. Retell signs nothing on the WebSocket, so the
protections are an unguessable secret in the URL and an IP allowlist, both checked
before any call state is touched."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import parse_qs

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``["100.20.5.228", "10.0.0.0/8"]`` -> networks; raises ``ValueError`` on a typo."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def ip_allowed(client_host: str | None, networks: tuple[Network, ...]) -> bool:
    if not networks:
        return True
    if client_host is None:
        return False
    try:
        address = ipaddress.ip_address(client_host)
    except ValueError:
        return False
    return any(address in network for network in networks)


def secret_matches(presented: str | None, expected: str) -> bool:
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def query_secret(query_string: bytes) -> str | None:
    """The ``token`` query parameter, if any."""
    if not query_string:
        return None
    values = parse_qs(query_string.decode("latin-1")).get("token")
    return values[0] if values else None
