"""Per-call state: the ``CallStore`` interface and its backends."""

from switchboard.state.base import (
    CallState,
    CallStore,
    FencedOut,
    StaleWrite,
    StoreUnavailable,
)
from switchboard.state.memory import MemoryCallStore

__all__ = [
    "CallState",
    "CallStore",
    "FencedOut",
    "MemoryCallStore",
    "StaleWrite",
    "StoreUnavailable",
]
