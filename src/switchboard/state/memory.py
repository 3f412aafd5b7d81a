"""In-process ``CallStore`` for the ``single`` profile.

Entries are stored encoded, exactly as a remote store would hold them, so an agent that
mutates ``Turn.state`` after a save cannot change what was saved, and tests of the memory
backend say something about the Redis one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from switchboard.state.base import CallState, FencedOut, StaleWrite

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CallState)


class MemoryCallStore:
    def __init__(self, ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, bytes]] = {}
        self._owners: dict[str, str] = {}
        self._next_sweep = clock() + ttl_s

    def _get(self, call_id: str) -> CallState | None:
        entry = self._entries.get(call_id)
        if entry is None:
            return None
        expires_at, blob = entry
        if expires_at <= self._clock():
            del self._entries[call_id]
            self._owners.pop(call_id, None)
            return None
        return _decoder.decode(blob)

    def _put(self, state: CallState) -> None:
        now = self._clock()
        self._entries[state.call_id] = (now + self.ttl_s, _encoder.encode(state))
        if now >= self._next_sweep:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        expired = [k for k, (exp, _) in self._entries.items() if exp <= now]
        for key in expired:
            del self._entries[key]
            self._owners.pop(key, None)
        self._next_sweep = now + self.ttl_s

    async def claim(self, call_id: str, owner: str) -> CallState:
        state = self._get(call_id) or CallState(call_id=call_id)
        state.epoch += 1
        self._owners[call_id] = owner
        self._put(state)
        return state

    async def save(self, state: CallState) -> None:
        current = self._get(state.call_id)
        if current is not None:
            if current.epoch > state.epoch:
                raise FencedOut(f"call {state.call_id} was claimed again (epoch {current.epoch})")
            if current.version != state.version:
                raise StaleWrite(
                    f"call {state.call_id} is at version {current.version}, not {state.version}"
                )
        state.version += 1
        self._put(state)

    async def load(self, call_id: str) -> CallState | None:
        return self._get(call_id)

    async def release(self, call_id: str, epoch: int) -> None:
        current = self._get(call_id)
        if current is None or current.epoch <= epoch:
            self._owners.pop(call_id, None)

    async def wait_available(self) -> None:
        return None

    def owner(self, call_id: str) -> str | None:
        """The node that holds the call now (``None`` once it ended or expired)."""
        return self._owners.get(call_id) if self._get(call_id) is not None else None

    async def delete(self, call_id: str) -> None:
        self._entries.pop(call_id, None)
        self._owners.pop(call_id, None)

    async def close(self) -> None:
        self._entries.clear()
        self._owners.clear()

    def __len__(self) -> int:
        return len(self._entries)
