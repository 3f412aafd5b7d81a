"""The per-socket call runtime."""

from switchboard.calls.observer import NULL_OBSERVER, SessionObserver
from switchboard.calls.session import CallSession, SessionOptions, Transport

__all__ = ["NULL_OBSERVER", "CallSession", "SessionObserver", "SessionOptions", "Transport"]
