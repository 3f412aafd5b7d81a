"""``switchboard replay``: load, play, compare, write; the exit status says what happened.

0: nothing differs. 1: something does. 2: bad input (the source, the agent file, an
option), reported as one line on stderr with no traceback, before any call is placed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from switchboard.replay.compare import DEFAULT_SIMILARITY, Summary, TextMatcher, compare
from switchboard.replay.report import write_html, write_json, write_junit
from switchboard.replay.run import ReplayOptions, ReplayRun, replay_calls
from switchboard.replay.source import SourceError, read_source

T = TypeVar("T")

#: differences printed on the terminal (the JSON and HTML have them all)
SHOWN = 20


class ReplayInputError(ValueError):
    """Bad input: exit status 2, the message is the one line printed."""


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    source: str
    url: str | None = None
    agent_file: Path | None = None
    speed: float = 1.0
    concurrency: int = 10
    json_out: Path | None = None
    report: Path | None = None
    junit: Path | None = None
    similarity: float = DEFAULT_SIMILARITY
    profile: str = "single"
    turn_timeout_s: float = 10.0


@contextlib.asynccontextmanager
async def _target(request: ReplayRequest) -> AsyncIterator[str]:
    if request.url is not None:
        yield request.url
        return
    from switchboard.replay.host import hosted_agent

    assert request.agent_file is not None
    async with hosted_agent(request.agent_file) as url:
        yield url


def _check(request: ReplayRequest) -> tuple[ReplayOptions, TextMatcher, float]:
    from switchboard.config import BUDGET_MS

    if (request.url is None) == (request.agent_file is None):
        raise ReplayInputError("give exactly one of --url and --agent-file")
    if request.agent_file is not None and not request.agent_file.is_file():
        raise ReplayInputError(f"{request.agent_file}: no such agent file")
    if request.profile not in BUDGET_MS:
        raise ReplayInputError(
            f"profile must be one of {', '.join(BUDGET_MS)}, got {request.profile!r}"
        )
    try:
        options = ReplayOptions(
            url=request.url or "ws://127.0.0.1:1",
            speed=request.speed,
            concurrency=request.concurrency,
            turn_timeout_s=request.turn_timeout_s,
        )
        options.sim_options()  # checks the URL
        matcher = TextMatcher(request.similarity)
    except ValueError as err:
        raise ReplayInputError(str(err)) from None
    return options, matcher, float(BUDGET_MS[request.profile])


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def run_replay(request: ReplayRequest, echo: Callable[[str], None] = print) -> tuple[int, Summary]:
    """``replay`` in a fresh event loop (uvloop when installed)."""
    return _run_loop(replay(request, echo))


async def replay(
    request: ReplayRequest,
    echo: Callable[[str], None] = print,
    warn: Callable[[str], None] = _stderr,
) -> tuple[int, Summary]:
    """Replay ``request.source``; return the exit status and the summary. Raises
    ``ReplayInputError`` for bad input (exit status 2). A field of Retell's objects that
    the SDK's types do not know is ignored with a warning (Retell adds fields faster than
    the SDK is pinned; a renamed field the replay needs fails on its own)."""
    options, matcher, budget_ms = _check(request)
    try:
        calls = await read_source(request.source)
    except SourceError as err:
        raise ReplayInputError(str(err)) from None
    if not calls:
        raise ReplayInputError(f"{request.source}: no calls to replay")
    unknown = sorted({name for call in calls for name in call.unknown_fields})
    if unknown:
        warn(
            f"replay: warning: {request.source}: fields retell-sdk does not know, ignored: "
            + ", ".join(unknown)
        )
    try:
        async with _target(request) as url:
            opts = ReplayOptions(
                url=url,
                speed=options.speed,
                concurrency=options.concurrency,
                turn_timeout_s=options.turn_timeout_s,
            )
            run = await replay_calls(calls, opts)
    except (OSError, ValueError) as err:  # an agent file that does not load, a bind
        where = str(request.agent_file or request.url)
        message = str(err) if str(err).startswith(where) else f"{where}: {err}"
        raise ReplayInputError(message.splitlines()[0] if message else where) from None
    summary = compare(run.calls, matcher, budget_ms)
    title = f"switchboard replay: {request.source} against {request.url or request.agent_file}"
    if request.json_out is not None:
        write_json(summary, request.json_out)
    if request.report is not None:
        write_html(summary, run, request.report, title)
    if request.junit is not None:
        write_junit(summary, run, request.junit)
    _print(summary, run, echo)
    return (1 if summary.differences else 0), summary


def _run_loop(main: Coroutine[Any, Any, T]) -> T:
    """In a fresh event loop, uvloop when installed (as the simulator runs)."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def _print(summary: Summary, run: ReplayRun, echo: Callable[[str], None]) -> None:
    failed: dict[str, int] = {}
    for played in run.calls:
        if played.record.failed:
            failed[played.record.reason] = failed.get(played.record.reason, 0) + 1
    echo(
        f"replayed {summary.calls} calls in {run.duration_s:.1f} s: "
        f"{summary.turns_compared} caller turns compared, {summary.turns_differing} differing, "
        f"{len(summary.differences)} difference(s)"
    )
    if failed:
        echo("calls failed: " + ", ".join(f"{n} {reason}" for reason, n in failed.items()))
    latency = summary.latency
    if latency is not None and latency.ttfb_p50_ms is not None:
        echo(
            f"TTFB p50 {latency.ttfb_p50_ms:g} ms, p99 {latency.ttfb_p99_ms:g} ms; "
            f"{latency.over_budget} of {latency.turns} replies over the "
            f"{latency.budget_ms:g} ms budget"
        )
    for d in summary.differences[:SHOWN]:
        where = "greeting" if d.turn == 0 else f"turn {d.turn}"
        echo(f"  {d.call_id} {where} [{d.kind}] expected {d.expected!r}, got {d.got!r}")
    if len(summary.differences) > SHOWN:
        echo(f"  ... and {len(summary.differences) - SHOWN} more (see --json-out / --report)")
