"""The per-socket call runtime: ``CallSession``, the I/O shell, and the turn's decisions
beside it without I/O (``supersession``, ``frames``, ``completion``, ``turn_input``)."""

from switchboard.calls.observer import NULL_OBSERVER, SessionObserver
from switchboard.calls.options import SessionOptions
from switchboard.calls.session import CallSession
from switchboard.calls.transport import Transport

__all__ = ["NULL_OBSERVER", "CallSession", "SessionObserver", "SessionOptions", "Transport"]
