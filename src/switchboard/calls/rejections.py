"""Inbound frames a session refuses, counted and logged without flooding the log.

Bad input gets a logged rejection and never harms the call (docs/architecture.md, invariant 6):
each refusal is counted on the observer; its log line is throttled per call (10,000
garbage frames are a handful of lines and a count), and an unknown field Retell added is
logged once per process.
"""

from __future__ import annotations

from typing import Any

from switchboard.calls.observer import SessionObserver
from switchboard.log import LogThrottle

_unknown_logged: set[str] = set()


class Rejections:
    """One per session: ``refuse`` for each frame it does not serve."""

    __slots__ = ("_log", "_observer", "_throttle")

    def __init__(self, log: Any, observer: SessionObserver) -> None:
        self._log = log
        self._observer = observer
        self._throttle = LogThrottle()

    def refuse(self, kind: str, message: str, /, *, level: str = "warning", **fields: Any) -> None:
        """Count a refused frame (``kind``: malformed, binary, unknown_interaction...)
        and log ``message`` unless this call logged too many of them lately."""
        self._observer.frame_rejected(kind)
        suppressed = self._throttle.allow(kind)
        if suppressed is None:
            return
        if suppressed:
            fields["suppressed"] = suppressed
        getattr(self._log, level)(message, **fields)

    def unknown_fields(self, paths: list[str]) -> None:
        """Fields Retell sent that we do not know: tolerated, logged once per process."""
        for path in paths:
            if path not in _unknown_logged:
                _unknown_logged.add(path)
                self._log.info("tolerated unknown field (logged once per process)", field=path)
        paths.clear()

    def close(self) -> None:
        """Report what the throttle kept out of the log."""
        for kind, count in self._throttle.suppressed().items():
            self._log.warning("suppressed repeated log lines", kind=kind, count=count)
