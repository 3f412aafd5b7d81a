"""The result of a simulator run: what the live display, the final table, the JSON file,
the HTML report and the exit code are all computed from.

One plain, versioned, JSON-serialisable structure, so reports from different runs (and
from ``make bench``) can be compared and rendered without re-running anything.
"""

from __future__ import annotations

import msgspec

SCHEMA_VERSION = 1


class LatencySummary(msgspec.Struct, kw_only=True):
    """Percentiles of one HDR histogram, in milliseconds."""

    count: int = 0
    min_ms: float = 0.0
    mean_ms: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    #: (value_ms, cumulative fraction) points for a CDF plot, ascending.
    cdf: list[tuple[float, float]] = msgspec.field(default_factory=list)
    #: (bucket upper bound ms, count) for a histogram plot, ascending.
    buckets: list[tuple[float, int]] = msgspec.field(default_factory=list)


class TurnKindStats(msgspec.Struct, kw_only=True):
    """Latency of one kind of turn: ``greeting``, ``response``, ``reminder``, ``barge_in``."""

    kind: str
    turns: int
    ttfb: LatencySummary  # request sent -> first frame for that id
    ttc: LatencySummary  # request sent -> content_complete for that id


class Violation(msgspec.Struct, kw_only=True):
    """One protocol violation by the server, as Retell would see it."""

    kind: str  # e.g. "stale_frame", "content_after_complete", "unknown_response_id",
    #            "missing_content_complete", "binary_frame", "no_begin_message", "no_pong",
    #            "invalid_frame", "expectation_failed"
    call_id: str
    detail: str
    response_id: int | None = None
    at_s: float = 0.0  # seconds since the run started


class ReconnectEvent(msgspec.Struct, kw_only=True):
    """One socket of a call lost and reopened, with wall-clock times (Unix seconds), so a
    tool that knows when it killed a node can line its kill up with the calls' recovery."""

    call_id: str
    cause: str  # "abnormal" (closed without a close frame: 1006) or "keepalive" (no pong)
    lost_at: float  # the simulator saw the socket end
    reopened_at: float | None = None  # the new socket opened (None: the call was lost)
    #: the new socket's begin message was empty: the call was resumed, not greeted again
    #: (``None``: not known yet, or the call had not been greeted before it was lost)
    begin_empty: bool | None = None
    answered_at: float | None = None  # the first turn answered on the new socket


class FailoverSummary(msgspec.Struct, kw_only=True):
    """What killing a node mid-run did to the calls (``switchboard demo --profile
    distributed``, the failover bench): set on the report by the tool that killed it."""

    killed_node: str
    killed_at: float  # Unix seconds
    #: the killed node's ``active_calls`` just before the kill
    calls_on_killed_node: int
    #: sockets lost after the kill, and the calls they belonged to
    sockets_lost: int = 0
    calls_lost_socket: int = 0
    #: of those calls, how many got a turn answered on a new socket without a new greeting
    calls_resumed: int = 0
    #: kill -> first turn answered on the new socket, one sample per lost socket
    kill_to_answer: LatencySummary = msgspec.field(default_factory=LatencySummary)


class ScenarioResult(msgspec.Struct, kw_only=True):
    name: str
    passed: bool
    failures: list[str] = msgspec.field(default_factory=list)


class ProcessStats(msgspec.Struct, kw_only=True):
    """CPU of one process over the run (the simulator itself, or the server under test)."""

    cpu_seconds: float = 0.0
    cpu_percent: float = 0.0  # of one core
    loop_lag: LatencySummary | None = None  # event-loop lag, simulator only


class RunReport(msgspec.Struct, kw_only=True):
    schema_version: int = SCHEMA_VERSION
    label: str = ""
    url: str
    started_at: str  # ISO 8601 UTC
    duration_s: float
    profile: str | None = None
    budget_ms: float
    options: dict[str, object] = msgspec.field(default_factory=dict)

    calls_started: int = 0
    calls_completed: int = 0
    #: failed calls by Retell disconnection reason, e.g. "error_llm_websocket_open"
    calls_failed: dict[str, int] = msgspec.field(default_factory=dict)
    #: every call by how it ended, failed or not: "user_hangup", "agent_hangup" (end_call or
    #: the server closing with 1000), "call_transfer", and the failure reasons above
    calls_ended: dict[str, int] = msgspec.field(default_factory=dict)
    reconnects: int = 0
    #: reconnects by what ended the previous socket: "abnormal" (1006) or "keepalive"
    reconnects_by_cause: dict[str, int] = msgspec.field(default_factory=dict)
    #: calls that reconnected at least once, and those of them resumed: a turn answered on
    #: the new socket, whose begin message was empty (or the call's first greeting, when
    #: the call was lost before it had been greeted)
    calls_reconnected: int = 0
    calls_resumed: int = 0
    #: every reconnect (up to the first 10,000), in the order the sockets were lost
    reconnect_events: list[ReconnectEvent] = msgspec.field(default_factory=list)
    #: socket lost -> first turn answered on the new socket
    loss_to_answer: LatencySummary = msgspec.field(default_factory=LatencySummary)

    turns: int = 0
    turns_per_s: float = 0.0
    per_kind: list[TurnKindStats] = msgspec.field(default_factory=list)
    connect: LatencySummary = msgspec.field(default_factory=LatencySummary)
    greeting: LatencySummary = msgspec.field(default_factory=LatencySummary)
    pong_rtt: LatencySummary = msgspec.field(default_factory=LatencySummary)

    #: counts by kind; only the first samples of each kind are kept in ``violation_samples``
    violations: dict[str, int] = msgspec.field(default_factory=dict)
    violation_samples: list[Violation] = msgspec.field(default_factory=list)
    #: frames for a superseded id that arrived within the stale grace: dropped, not violations
    stale_in_grace: int = 0
    frames_dropped: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    #: messages other than ``response`` the server sent, by ``response_type``
    server_messages: dict[str, int] = msgspec.field(default_factory=dict)

    scenarios: list[ScenarioResult] = msgspec.field(default_factory=list)
    client: ProcessStats = msgspec.field(default_factory=ProcessStats)
    server: ProcessStats | None = None
    #: the server's response-cache counters from its ``/metrics`` (empty: none exposed)
    cache: dict[str, float] = msgspec.field(default_factory=dict)
    #: the server's own timings of this run's response turns, from its ``/metrics``
    #: histograms (``server_metrics.turn_breakdown``; empty: none exposed)
    server_timings: dict[str, float] = msgspec.field(default_factory=dict)
    #: server turns per second per core of server CPU (bench only, when the pid is known)
    turns_per_core_s: float | None = None

    #: set when a node was killed on purpose during the run
    failover: FailoverSummary | None = None

    passed: bool = False
    #: why the run failed (empty when it passed); each one alone fails the run
    verdict_reasons: list[str] = msgspec.field(default_factory=list)
    #: doubts about the measurement itself (e.g. a saturated simulator); never fail the run
    verdict_warnings: list[str] = msgspec.field(default_factory=list)
