"""The per-socket call runtime."""

from switchboard.calls.observer import NULL_OBSERVER, SessionObserver
from switchboard.calls.options import SessionOptions
from switchboard.calls.session import CallSession
from switchboard.calls.transport import Transport

__all__ = ["NULL_OBSERVER", "CallSession", "SessionObserver", "SessionOptions", "Transport"]
