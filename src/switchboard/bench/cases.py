"""The bench's cases: one measured configuration each, with the targets it is held to, and
the sizes every case of a run shares.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

AGENT_FILES = {"scripted": "receptionist.yaml", "openai": "openai-receptionist.yaml"}


class BenchCase(msgspec.Struct, frozen=True, kw_only=True):
    """One measured configuration and the targets it is held to (``None``: no target)."""

    name: str
    agent: str  # a key of AGENT_FILES
    calls: int
    barge_in_rate: float = 0.0
    min_turns_per_core_s: float | None = None
    max_ttfb_p99_ms: float | None = None
    #: the nodes' profile; ``distributed`` gets the bench's valkey-server
    profile: str = "single"
    #: the simulator reaches the node through HAProxy
    via_haproxy: bool = False
    #: a 3-node cluster behind HAProxy, the busiest node killed mid-run
    failover: bool = False
    #: turns/s per core at least this share of the named case's, in the same run
    min_turns_per_core_vs: tuple[str, float] | None = None
    #: TTFB p99 at most this many ms above the named case's, in the same run
    max_ttfb_p99_delta_vs: tuple[str, float] | None = None
    #: kill -> first answered turn after the reconnect, p99
    max_failover_p99_ms: float | None = None
    #: event-driven: the archive consumes during the run (on the simulator's core, so it
    #: measures event latency but disturbs the simulator) or only after it (counts only)
    archive_live: bool = False
    #: the fake LLM's time to first token (the "slow LLM" rows)
    ttft_ms: float = 0.0
    #: response cache of the server: off, memory or redis (the bench's valkey-server)
    cache: str = "off"
    #: target for turns answered by the exact tier (server: turn start -> first cached chunk)
    max_cached_ttfb_p99_ms: float | None = None
    #: the verdict's TTFB budget instead of the profile's (a slow LLM misses any budget by
    #: design: those rows are judged on correctness, and compared in the notes)
    budget_ms: float | None = None
    #: pong RTT p99 (the simulator pings every 2 s, as Retell does)
    max_pong_rtt_p99_ms: float | None = None
    #: calls that may fail (``None``: not a target; the verdict judges them anyway)
    max_failed_calls: int | None = None
    #: the case's own caller pause and ramp instead of the run's (``BenchSettings``)
    think_ms: float | None = None
    ramp_ms: float | None = None
    #: at least this many seconds of load, whatever the run's duration
    min_duration_s: float | None = None
    #: simulator processes (``switchboard simulate --workers``)
    simulator_workers: int = 1
    #: ``switchboard chaos`` on a 3-node cluster of its own, one fault of each kind
    chaos: bool = False
    #: turns per call instead of the run's (``BenchSettings.turns``)
    turns: int | None = None
    #: run only when named in ``--cases`` (too long or too heavy for every ``make bench``)
    named_only: bool = False


DEFAULT_CASES: tuple[BenchCase, ...] = (
    BenchCase(
        name="scripted-100",
        agent="scripted",
        calls=100,
        min_turns_per_core_s=2000,
        max_ttfb_p99_ms=20,
    ),
    BenchCase(name="scripted-300", agent="scripted", calls=300, min_turns_per_core_s=2000),
    BenchCase(
        name="openai-0ms-100",
        agent="openai",
        calls=100,
        min_turns_per_core_s=700,
        max_ttfb_p99_ms=20,
    ),
    BenchCase(name="openai-0ms-300", agent="openai", calls=300, min_turns_per_core_s=700),
    BenchCase(
        name="barge-in-0.3", agent="scripted", calls=100, barge_in_rate=0.3, max_ttfb_p99_ms=20
    ),
    BenchCase(
        name="distributed-100",
        agent="scripted",
        calls=100,
        profile="distributed",
        max_ttfb_p99_ms=20,
        min_turns_per_core_vs=("scripted-100", 0.75),
    ),
    BenchCase(
        name="distributed-haproxy-100",
        agent="scripted",
        calls=100,
        profile="distributed",
        via_haproxy=True,
        max_ttfb_p99_delta_vs=("distributed-100", 1.0),
    ),
    BenchCase(
        name="scripted-5000",
        agent="scripted",
        calls=5000,
        think_ms=3000,
        ramp_ms=10_000,
        min_duration_s=30,
        simulator_workers=2,
        max_ttfb_p99_ms=100,
        max_pong_rtt_p99_ms=100,
        max_failed_calls=0,
    ),
    # One node core at 10,000 calls (docs/scale.md): run it by name, on a machine of its own.
    BenchCase(
        name="scripted-10000",
        agent="scripted",
        calls=10_000,
        turns=16,
        think_ms=3000,
        ramp_ms=30_000,
        min_duration_s=60,
        simulator_workers=2,
        max_ttfb_p99_ms=50,
        max_pong_rtt_p99_ms=50,
        max_failed_calls=0,
        named_only=True,
    ),
    BenchCase(
        name="failover-3x",
        agent="scripted",
        calls=100,
        profile="distributed",
        failover=True,
        max_failover_p99_ms=2000,
    ),
    # Publishing events on top of distributed: CPU per turn +<= 10 %, TTFB p99 +<= 1 ms.
    BenchCase(
        name="event-driven-100",
        agent="scripted",
        calls=100,
        profile="event-driven",
        min_turns_per_core_vs=("distributed-100", 1 / 1.1),
        max_ttfb_p99_delta_vs=("distributed-100", 1.0),
    ),
    BenchCase(
        name="event-driven-300",
        agent="scripted",
        calls=300,
        profile="event-driven",
        max_ttfb_p99_ms=300,
    ),
    # The archive consuming live: turn completed -> archived, p50/p99.
    BenchCase(
        name="event-latency-100",
        agent="scripted",
        calls=100,
        profile="event-driven",
        archive_live=True,
    ),
    # Faults on a live cluster: one of each kind (docs/chaos.md); figures in the notes.
    BenchCase(name="chaos", agent="scripted", calls=100, profile="distributed", chaos=True),
    # The error table's "slow LLM" fix: the same run with the response cache off and on.
    BenchCase(name="slow-llm-800ms", agent="openai", calls=100, ttft_ms=800, budget_ms=2500),
    BenchCase(
        name="slow-llm-800ms-cached",
        agent="openai",
        calls=100,
        ttft_ms=800,
        cache="redis",
        max_cached_ttfb_p99_ms=5,
        budget_ms=2500,
    ),
)


class BenchSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Sizes shared by every case; shrink them for a quick look or a test."""

    duration_s: float = 20.0
    turns: int = 6
    think_ms: float = 250.0
    #: call starts are spread over this time, so a case measures steady state, not a connect storm
    ramp_ms: float = 2000.0
    seed: int = 1
    results_dir: Path = Path("bench/results")


def choose_cases(names: str | None) -> list[BenchCase]:
    """The cases named in a comma-separated list, in the default order (``None`` or empty:
    every case but the ``named_only`` ones). An unknown name is a ``ValueError`` that lists
    the known ones."""
    if not names:
        return [c for c in DEFAULT_CASES if not c.named_only]
    wanted = {c.strip() for c in names.split(",") if c.strip()}
    unknown = wanted - {c.name for c in DEFAULT_CASES}
    if unknown:
        known = ", ".join(c.name for c in DEFAULT_CASES)
        raise ValueError(f"unknown case(s) {', '.join(sorted(unknown))}; known: {known}")
    return [c for c in DEFAULT_CASES if c.name in wanted]
