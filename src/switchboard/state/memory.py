"""In-process ``CallStore`` for the ``single`` profile.

Entries are stored encoded, exactly as a remote store would hold them, so an agent that
mutates ``Turn.state`` after a save cannot change what was saved, and tests of the memory
backend say something about the Redis one. Ownership works as in Redis: each claim mints
a token, and a save that finds the call gone (its TTL ran out) is ``StateLost``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import msgspec

from switchboard.state.base import CallState, FencedOut, StaleWrite, StateLost

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CallState)


class _Entry(msgspec.Struct):
    expires_at: float
    blob: bytes
    epoch: int
    version: int
    token: str
    owner: str | None


class MemoryCallStore:
    def __init__(self, ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._next_sweep = clock() + ttl_s

    def _entry(self, call_id: str) -> _Entry | None:
        entry = self._entries.get(call_id)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            del self._entries[call_id]
            return None
        return entry

    def _state(self, entry: _Entry) -> CallState:
        state = _decoder.decode(entry.blob)
        state.epoch, state.version, state.token = entry.epoch, entry.version, entry.token
        return state

    def _put(self, state: CallState, owner: str | None) -> None:
        now = self._clock()
        self._entries[state.call_id] = _Entry(
            now + self.ttl_s, _encoder.encode(state), state.epoch, state.version, state.token, owner
        )
        if now >= self._next_sweep:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        expired = [k for k, entry in self._entries.items() if entry.expires_at <= now]
        for key in expired:
            del self._entries[key]
        self._next_sweep = now + self.ttl_s

    async def claim(self, call_id: str, owner: str) -> CallState:
        entry = self._entry(call_id)
        state = self._state(entry) if entry is not None else CallState(call_id=call_id)
        state.epoch += 1
        state.token = uuid.uuid4().hex
        self._put(state, owner)
        return state

    async def save(self, state: CallState) -> None:
        self.save_now(state)

    def save_now(self, state: CallState) -> None:
        """``save``, synchronous (``InlineSaves``)."""
        entry = self._entry(state.call_id)
        if entry is None:
            raise StateLost(f"call {state.call_id} is no longer stored")
        if entry.token != state.token:
            raise FencedOut(f"call {state.call_id} is held by another claim (epoch {entry.epoch})")
        if entry.version != state.version:
            raise StaleWrite(
                f"call {state.call_id} is at version {entry.version}, not {state.version}"
            )
        state.version += 1
        self._put(state, entry.owner)

    async def restore(self, state: CallState) -> bool:
        if self._entry(state.call_id) is not None:
            return False
        self._put(state, None)
        return True

    async def reclaim(self, state: CallState, owner: str) -> bool:
        entry = self._entry(state.call_id)
        if entry is not None:
            if entry.token != state.token:
                return False
            state.version = max(state.version, entry.version)
        state.version += 1
        self._put(state, owner)
        return True

    async def load(self, call_id: str) -> CallState | None:
        entry = self._entry(call_id)
        return self._state(entry) if entry is not None else None

    async def latest_claim(self, call_id: str) -> str | None:
        entry = self._entry(call_id)
        return entry.token if entry is not None else None

    async def release(self, call_id: str, token: str) -> None:
        entry = self._entry(call_id)
        if entry is not None and entry.token == token:
            entry.owner = None

    async def wait_available(self) -> None:
        return None

    def owner(self, call_id: str) -> str | None:
        """The node that holds the call now (``None`` once it ended or expired)."""
        entry = self._entry(call_id)
        return entry.owner if entry is not None else None

    async def delete(self, call_id: str) -> None:
        self._entries.pop(call_id, None)

    async def close(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
