"""The requests of one call and what Retell makes of each response frame (spec 1.8).

Pure bookkeeping, no I/O: the caller tells the ledger when it sends a request and hands it
every ``response`` frame with the time it was read; the ledger decides whether Retell would
play the frame or drop it, records TTFB/TTC and counts violations.

Retell accepts content only for the most recently requested id, and only until that id is
complete. A frame for a superseded id is dropped; it is a ``stale_frame`` violation when
the server must have known of the newer request when it sent it: it arrived more than the
grace after the newer request was sent, or after a frame answering a newer request (frames
on one socket are ordered). Earlier ones were in flight and are only counted. Content
after ``content_complete`` and ids never requested are always violations.
"""

from __future__ import annotations

from switchboard.protocol.outbound import Response
from switchboard.sim.metrics import RunMetrics


class Request:
    """One ``response_required``/``reminder_required`` and what came back for it."""

    __slots__ = (
        "completed",
        "digits",
        "end_call",
        "first_at",
        "id",
        "interrupted",
        "kind",
        "no_interruption",
        "parts",
        "sent_at",
        "superseded_at",
        "transfer_number",
    )

    def __init__(self, response_id: int, kind: str, sent_at: float) -> None:
        self.id = response_id
        self.kind = kind
        self.sent_at = sent_at
        self.first_at: float | None = None
        self.superseded_at: float | None = None
        self.completed = False
        self.interrupted = False
        #: some content came with ``no_interruption_allowed``: the caller cannot barge in
        self.no_interruption = False
        self.parts: list[str] = []
        self.end_call = False
        self.transfer_number: str | None = None
        self.digits: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)


class Ledger:
    """Every request of one call, across its sockets (ids grow for the whole call)."""

    __slots__ = ("_grace", "call_id", "metrics", "requests")

    def __init__(self, call_id: str, metrics: RunMetrics, stale_grace_s: float) -> None:
        self.call_id = call_id
        self.metrics = metrics
        self.requests: list[Request] = []
        self._grace = stale_grace_s

    @property
    def current(self) -> Request | None:
        return self.requests[-1] if self.requests else None

    def request(self, kind: str, now: float) -> Request:
        """A new request (id = previous + 1), superseding the pending one if any."""
        requests = self.requests
        if requests:
            last = requests[-1]
            if not last.completed and last.superseded_at is None:
                last.superseded_at = now
        req = Request(len(requests) + 1, kind, now)
        requests.append(req)
        return req

    def interrupt(self) -> bool:
        """An ``agent_interrupt`` cancels the response in flight; True if there was one."""
        current = self.current
        if current is None or current.completed or current.interrupted:
            return False
        current.interrupted = True
        return True

    def on_response(self, r: Response, now: float) -> bool:
        """Judge one frame for an id above 0; True when the current request got its first
        frame or completed (what a waiting caller wakes up for)."""
        m = self.metrics
        rid = r.response_id
        requests = self.requests
        if rid < 1 or rid > len(requests):
            m.violation(
                "unknown_response_id",
                self.call_id,
                f"response_id {rid} was never requested (latest is {len(requests)})",
                rid,
            )
            m.frames_dropped += 1
            return False
        req = requests[rid - 1]
        if req.completed:
            m.violation(
                "content_after_complete",
                self.call_id,
                f"frame for response_id {rid} after its content_complete: {r.content[:60]!r}",
                rid,
            )
            m.frames_dropped += 1
            return False
        if req.superseded_at is not None:
            self._stale(req, now)
            return False
        if req.interrupted:
            m.frames_dropped += 1  # agent_interrupt cancelled it; Retell drops the rest
            return False
        times = m.per_kind[req.kind]
        woke = False
        if req.first_at is None:
            req.first_at = now
            times.ttfb.record(now - req.sent_at)
            woke = True
        req.parts.append(r.content)
        if r.no_interruption_allowed:
            req.no_interruption = True
        if r.content_complete:
            req.completed = True
            req.end_call = bool(r.end_call)
            req.transfer_number = r.transfer_number
            req.digits = r.digit_to_press
            times.ttc.record(now - req.sent_at)
            m.turns += 1
            woke = True
        return woke

    def _stale(self, req: Request, now: float) -> None:
        m = self.metrics
        m.frames_dropped += 1
        assert req.superseded_at is not None
        late = now - req.superseded_at
        rid = req.id
        if late > self._grace:
            detail = (
                f"frame for superseded response_id {rid} {late * 1000:.1f} ms after "
                f"response_id {rid + 1} was sent"
            )
        elif any(newer.first_at is not None for newer in self.requests[rid:]):
            detail = (
                f"frame for superseded response_id {rid} after the server had already "
                f"answered a newer request"
            )
        else:
            m.stale_in_grace += 1
            return
        m.violation("stale_frame", self.call_id, detail, rid)
