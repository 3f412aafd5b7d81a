"""The in-process ``ResponseCache`` of the ``single`` profile: dicts with a monotonic TTL.

Expired entries are dropped when read and swept now and then on write, so a long-running
node does not keep replies past their TTL. Bounded by ``max_entries`` (oldest first out).
"""

from __future__ import annotations

import time


class MemoryResponseCache:
    name = "memory"

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, bytes]] = {}
        self._tables: dict[str, dict[str, bytes]] = {}
        self._writes = 0

    async def get(self, key: str) -> bytes | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if expires <= time.monotonic():
            del self._entries[key]
            return None
        return value

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self._entries.pop(key, None)  # re-inserted last: dict order is age order
        self._entries[key] = (time.monotonic() + ttl_s, value)
        self._writes += 1
        if self._writes % 1024 == 0:
            self._sweep()
        while len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            del self._entries[oldest]
            for table in self._tables.values():
                table.pop(oldest, None)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)
        for table in self._tables.values():
            table.pop(key, None)

    async def put_vector(self, table: str, key: str, vector: bytes, ttl_s: float) -> None:
        self._tables.setdefault(table, {})[key] = vector

    async def vectors(self, table: str) -> dict[str, bytes]:
        return dict(self._tables.get(table, {}))

    async def delete_vector(self, table: str, key: str) -> None:
        self._tables.get(table, {}).pop(key, None)

    async def count(self) -> int:
        self._sweep()
        return len(self._entries)

    async def clear(self) -> int:
        gone = len(self._entries) + len(self._tables)
        self._entries.clear()
        self._tables.clear()
        return gone

    async def close(self) -> None:
        return None

    def _sweep(self) -> None:
        now = time.monotonic()
        for key in [k for k, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
