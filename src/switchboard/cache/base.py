"""The ``ResponseCache`` interface: stored replies and the vectors that find them.

A backend is a small key-value store with a TTL, plus a per-agent *vector table* the
semantic tier loads into its in-process index (so every node of a cluster finds what any
node stored). Backends hold opaque bytes; what an entry means is ``entry.py``'s business,
so a corrupt or foreign value is found and dropped in one place. Every backend passes the
same contract suite (``tests/test_cache_contract.py``).

Backends may raise ``CacheUnavailable`` (Redis down, slow or refusing); callers treat it
as a miss and never as a failed turn.
"""

from __future__ import annotations

from typing import Protocol


class CacheUnavailable(RuntimeError):
    """The backend did not answer in time or at all; the turn goes on without the cache."""


class ResponseCache(Protocol):
    #: Short name for logs and ``switchboard cache stats`` (``memory``, ``redis``).
    name: str

    async def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, or ``None`` (absent or expired)."""
        ...

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store ``value`` under ``key`` for ``ttl_s`` seconds (replacing any older value)."""
        ...

    async def delete(self, key: str) -> None:
        """Forget ``key`` and its vector (a corrupt entry, or ``clear``)."""
        ...

    async def put_vector(self, table: str, key: str, vector: bytes, ttl_s: float) -> None:
        """Record ``vector`` for the entry ``key`` in ``table`` (one table per agent digest).

        The table lives at least as long as its newest entry; a vector whose entry has
        expired is dropped when a lookup finds the entry gone.
        """
        ...

    async def vectors(self, table: str) -> dict[str, bytes]:
        """Every vector in ``table``, by entry key (the semantic index loads from this)."""
        ...

    async def delete_vector(self, table: str, key: str) -> None: ...

    async def count(self) -> int:
        """How many entries are stored (for ``stats``; may be approximate)."""
        ...

    async def clear(self) -> int:
        """Delete every entry and vector table; returns how many keys went."""
        ...

    async def close(self) -> None: ...
