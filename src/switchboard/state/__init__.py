"""Per-call state: the ``CallStore`` interface and its backends."""

from switchboard.state.base import (
    CallState,
    CallStore,
    FencedOut,
    LastReply,
    StaleWrite,
    StateLost,
    StoreUnavailable,
)
from switchboard.state.memory import MemoryCallStore

__all__ = [
    "CallState",
    "CallStore",
    "FencedOut",
    "LastReply",
    "MemoryCallStore",
    "StaleWrite",
    "StateLost",
    "StoreUnavailable",
]
