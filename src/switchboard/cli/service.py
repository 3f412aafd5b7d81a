"""``switchboard service ...`` (run a consumer) and ``switchboard archive ...`` (read it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from switchboard.services.archive import queries as q

if TYPE_CHECKING:
    from switchboard.services.archive.store import ArchiveDb
    from switchboard.services.dead_letters import DeadLetterStore

T = TypeVar("T")

service_app = typer.Typer(
    help="Run an event consumer as its own process.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
archive_app = typer.Typer(
    help="Read the transcript archive.", no_args_is_help=True, rich_markup_mode="markdown"
)

BusOption = Annotated[
    str, typer.Option("--bus", help="Event bus: kafka://H:P, redis://H:P/DB or memory://.")
]
NamespaceOption = Annotated[
    str, typer.Option(help="Key prefix on Redis (bus and command channel).")
]
DbOption = Annotated[
    str | None,
    typer.Option("--db", help="sqlite path or postgresql:// URL (default: the local file)."),
]
DeadLettersOption = Annotated[
    Path | None,
    typer.Option(
        "--dead-letters",
        help="Dead-letter store (SQLite); default: beside --db, named *-dead-letters.db.",
    ),
]
HostOption = Annotated[str, typer.Option(help="Interface of /metrics.")]
MetricsPortOption = Annotated[
    int | None, typer.Option("--metrics-port", help="Serve /metrics on this port.")
]


def _needs_services(what: str) -> None:
    """The services and their SQLite stores are the ``event-driven`` extra."""
    from switchboard.extras import require

    require("event-driven", "aiosqlite", f"{what} is part of the event-driven profile")


def _run_service(service: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a service to its end; a state file it cannot open is one line and exit 2."""
    import sqlite3

    try:
        asyncio.run(run())
    except sqlite3.DatabaseError as err:
        typer.echo(f"{service}: cannot open its database: {err}", err=True)
        raise typer.Exit(2) from None


def _claim_port(service: str, host: str, port: int | None) -> None:
    """Refuse to start a service whose HTTP port is taken, before it opens anything."""
    from switchboard.ports import PortError, ensure_free

    if port is None:
        return
    try:
        ensure_free(host, port)
    except PortError as err:
        typer.echo(f"{service}: {err}; pass another port", err=True)
        raise typer.Exit(2) from None


@service_app.command("archive")
def service_archive(
    bus: BusOption,
    db: DbOption = None,
    namespace: NamespaceOption = "switchboard:",
    name: Annotated[str, typer.Option(help="Member name; stable across restarts.")] = "archive-1",
    dead_letters: DeadLettersOption = None,
    host: HostOption = "127.0.0.1",
    metrics_port: MetricsPortOption = None,
) -> None:
    """Archive calls, turns and Retell's analysis (SQLite by default, or PostgreSQL)."""
    _needs_services("the archive service")
    from switchboard.log import configure
    from switchboard.services.archive import default_db_url, open_archive
    from switchboard.services.archive.service import ArchiveWriter
    from switchboard.services.dead_letters import default_path
    from switchboard.services.process import ServiceOptions, run_consumer, serve_metrics
    from switchboard.services.service_metrics import ServiceStats

    _claim_port("archive", host, metrics_port)
    configure()
    options = ServiceOptions(
        bus_url=bus,
        namespace=namespace,
        group="archive",
        name=name,
        dead_letters=dead_letters or default_path(db or default_db_url(), "archive"),
    )
    stats = ServiceStats("archive")

    async def run() -> None:
        archive = await open_archive(db)
        try:
            async with serve_metrics(stats, host, metrics_port) as stop:
                await run_consumer(options, ArchiveWriter(archive), stop, stats=stats)
        finally:
            await archive.close()

    _run_service("archive", run)


@service_app.command("analytics")
def service_analytics(
    bus: BusOption,
    db: Annotated[Path, typer.Option("--db", help="Analytics' own state (SQLite).")] = Path(
        "switchboard-analytics.db"
    ),
    archive_db: Annotated[
        str | None,
        typer.Option("--archive-db", help="The archive, for the dashboard's recent calls."),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Interface of the dashboard and /metrics.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the dashboard and /metrics.")] = 8090,
    namespace: NamespaceOption = "switchboard:",
    name: Annotated[str, typer.Option(help="Member name; stable across restarts.")] = "analytics-1",
    dead_letters: DeadLettersOption = None,
) -> None:
    """Live aggregates: Prometheus /metrics, JSON /api/summary and a dashboard at /."""
    _needs_services("the analytics service")
    from switchboard.log import configure
    from switchboard.services.analytics.service import Analytics, create_app
    from switchboard.services.analytics.store import AnalyticsStore
    from switchboard.services.archive import open_archive
    from switchboard.services.dead_letters import default_path
    from switchboard.services.process import ServiceOptions, run_consumer, serve_http
    from switchboard.services.service_metrics import ServiceStats

    _claim_port("analytics", host, port)
    configure()
    options = ServiceOptions(
        bus_url=bus,
        namespace=namespace,
        group="analytics",
        name=name,
        dead_letters=dead_letters or default_path(db, "analytics"),
    )
    stats = ServiceStats("analytics")

    async def run() -> None:
        store = await AnalyticsStore.open(db)
        archive = await open_archive(archive_db) if archive_db else None
        analytics = Analytics(store)
        try:
            async with serve_http(create_app(analytics, archive, stats), host, port) as stop:
                await run_consumer(options, analytics, stop, stats=stats)
        finally:
            await store.close()
            if archive is not None:
                await archive.close()

    _run_service("analytics", run)


@service_app.command("escalation")
def service_escalation(
    bus: BusOption,
    rules: Annotated[Path, typer.Option("--rules", help="Escalation rules (YAML).")],
    redis_url: Annotated[
        str, typer.Option("--redis-url", help="The cluster's Redis (command channel).")
    ],
    db: Annotated[Path, typer.Option("--db", help="Escalation's own state (SQLite).")] = Path(
        "switchboard-escalation.db"
    ),
    namespace: NamespaceOption = "switchboard:",
    name: Annotated[
        str, typer.Option(help="Member name; stable across restarts.")
    ] = "escalation-1",
    stale_after: Annotated[
        float,
        typer.Option(
            "--stale-after",
            envvar="SWITCHBOARD_ESCALATION_STALE_AFTER_S",
            min=0.0,
            help="Turns older than this many seconds are never acted on.",
        ),
    ] = 60.0,
    max_pending: Annotated[
        float,
        typer.Option(
            "--max-pending",
            envvar="SWITCHBOARD_ESCALATION_MAX_PENDING_S",
            min=0.0,
            help="Seconds to keep retrying an escalation before reporting it failed.",
        ),
    ] = 120.0,
    dead_letters: DeadLettersOption = None,
    host: HostOption = "127.0.0.1",
    metrics_port: MetricsPortOption = None,
) -> None:
    """Act on live calls when a rule fires: handoff line + transfer, or a supervisor alert."""
    _needs_services("the escalation service")
    import httpx

    from switchboard.control.client import CallControl
    from switchboard.events.buses import open_bus
    from switchboard.log import configure
    from switchboard.services.dead_letters import default_path
    from switchboard.services.escalation.rules import RulesError, load_rules
    from switchboard.services.escalation.service import Escalation, EscalationStore
    from switchboard.services.process import ServiceOptions, run_consumer, serve_metrics
    from switchboard.services.service_metrics import ServiceStats

    _claim_port("escalation", host, metrics_port)
    configure()
    try:
        rules_file = load_rules(rules)
    except RulesError as err:
        typer.echo(f"escalation: {err}", err=True)
        raise typer.Exit(2) from None
    options = ServiceOptions(
        bus_url=bus,
        namespace=namespace,
        group="escalation",
        name=name,
        dead_letters=dead_letters or default_path(db, "escalation"),
    )
    stats = ServiceStats("escalation")

    async def run() -> None:
        store = await EscalationStore.open(db)
        control = CallControl.from_url(redis_url, namespace=namespace)
        publisher = open_bus(bus, namespace=namespace)
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
            handler = Escalation(
                rules_file,
                store,
                control,
                publisher,
                http,
                stale_after_s=stale_after,
                pending_max_age_s=max_pending,
            )
            try:
                async with serve_metrics(stats, host, metrics_port) as stop:
                    await run_consumer(
                        options, handler, stop, on_ready=handler.resume_pending, stats=stats
                    )
            finally:
                await handler.stop()
                await publisher.close()
                await control.aclose()
                await store.close()

    _run_service("escalation", run)


def _read(db: str | None, query: Callable[[ArchiveDb], Awaitable[T]]) -> T:
    """Open an existing archive, run one query, close it; a missing or unreadable archive
    is one line and exit 2."""
    import sqlite3

    from switchboard.services.archive import ArchiveMissing, open_archive

    async def go() -> T:
        archive = await open_archive(db, create=False)
        try:
            return await query(archive)
        finally:
            await archive.close()

    try:
        return asyncio.run(go())
    except ArchiveMissing as err:
        typer.echo(f"archive: {err}", err=True)
        raise typer.Exit(2) from None
    except (sqlite3.DatabaseError, OSError) as err:
        typer.echo(f"archive: cannot read {db or 'the archive'}: {err}", err=True)
        raise typer.Exit(2) from None


@archive_app.command("list")
def archive_list(
    db: DbOption = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The most recent calls."""
    rows = _read(db, lambda a: q.list_calls(a, limit))
    if as_json:
        typer.echo(json.dumps([asdict(row) for row in rows]))
        return
    for row in rows:
        typer.echo(
            f"{row.call_id}  {row.started_at or '-':32}  turns={row.turns:<4} "
            f"end={row.end_how or '-':10} sentiment={row.sentiment or '-'}"
            + (f"  escalated={row.escalated_rule}" if row.escalated_rule else "")
        )


@archive_app.command("show")
def archive_show(call_id: str, db: DbOption = None) -> None:
    """One call and its transcript."""
    call, turns = _read(db, lambda a: q.show_call(a, call_id))
    if call is None and not turns:
        typer.echo(f"archive: no call {call_id!r} in the archive", err=True)
        raise typer.Exit(1)
    for key, value in (call or {}).items():
        if value is not None:
            typer.echo(f"{key}: {value}")
    for turn in turns:
        flags = " (superseded)" if turn.superseded else ""
        flags += f" (fallback: {turn.fallback_reason})" if turn.fallback_reason else ""
        ttfb = f"{turn.ttfb_ms:.0f} ms" if turn.ttfb_ms is not None else "-"
        typer.echo(f"[{turn.response_id} {turn.kind}, ttfb {ttfb}]{flags}")
        if turn.caller_line:
            typer.echo(f"  caller: {turn.caller_line}")
        typer.echo(f"  agent:  {turn.reply}")


@archive_app.command("search")
def archive_search(
    text: str, db: DbOption = None, limit: Annotated[int, typer.Option(min=1)] = 50
) -> None:
    """Turns whose caller line or reply contains TEXT (case-insensitive)."""
    for call_id, turn in _read(db, lambda a: q.search(a, text, limit)):
        typer.echo(
            f"{call_id} #{turn.response_id}  caller: {turn.caller_line!r}  agent: {turn.reply!r}"
        )


@archive_app.command("stats")
def archive_stats(
    db: DbOption = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Calls, turns, events applied, duplicates dropped."""
    result = _read(db, lambda a: q.stats(a)).as_dict()
    if as_json:
        typer.echo(json.dumps(result))
        return
    for key, value in result.items():
        typer.echo(f"{key.replace('_', ' ')}: {value}")


@archive_app.command("questions")
def archive_questions(
    db: DbOption = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The caller questions asked most often (for warming the response cache)."""
    rows = _read(db, lambda a: q.top_questions(a, limit))
    if as_json:
        typer.echo(json.dumps([{"question": text, "count": n} for text, n in rows]))
        return
    for text, n in rows:
        typer.echo(f"{n:6}  {text}")


@archive_app.command("export")
def archive_export(
    out: Annotated[Path, typer.Option("--out", help="Where to write the JSON array.")],
    since: Annotated[
        str | None,
        typer.Option("--since", help="Calls started since: 7d, 24h, 30m or an ISO date/time."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Archived calls as Retell call objects: a regression set for switchboard replay."""
    from switchboard.replay.export import call_object, parse_since
    from switchboard.replay.source import SourceError, load_archive
    from switchboard.services.archive import default_db_url

    try:
        cutoff = parse_since(since) if since is not None else None
        calls = asyncio.run(load_archive(db or default_db_url(), cutoff))
    except (ValueError, SourceError) as err:
        typer.echo(f"archive: {err}", err=True)
        raise typer.Exit(2) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([call_object(c) for c in calls], indent=1) + "\n")
    typer.echo(f"{len(calls)} call(s) written to {out}")


dead_letters_app = typer.Typer(
    help="A service's dead letters: messages it could never process.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
service_app.add_typer(dead_letters_app, name="deadletters")

StoreOption = Annotated[
    Path, typer.Option("--store", help="The service's dead-letter store (--dead-letters).")
]


def _letters(store: Path, action: Callable[[DeadLetterStore], Awaitable[T]]) -> T:
    _needs_services("the dead-letter store")
    from switchboard.services.dead_letters import DeadLetterStore

    if not store.exists():
        typer.echo(f"deadletters: no store at {store}", err=True)
        raise typer.Exit(1)

    async def go() -> T:
        opened = await DeadLetterStore.open(store)
        try:
            return await action(opened)
        finally:
            await opened.close()

    return asyncio.run(go())


@dead_letters_app.command("list")
def dead_letters_list(
    store: StoreOption,
    state: Annotated[
        str | None, typer.Option(help="Only this state: parked, replay or replayed.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Parked messages: where they were on the bus, why, and their state."""
    letters = _letters(store, lambda s: s.list(state=state, limit=limit))
    if as_json:
        out = [
            {
                "id": d.id,
                "group": d.group,
                "source": d.source,
                "position": d.position,
                "reason": d.reason,
                "detail": d.detail,
                "state": d.state,
                "attempts": d.attempts,
                "key": d.message.key.decode(errors="replace"),
                "value_bytes": len(d.message.value),
            }
            for d in letters
        ]
        typer.echo(json.dumps(out))
        return
    for d in letters:
        typer.echo(
            f"{d.id:6}  {d.state:8} {d.group:11} {d.source}@{d.position}  {d.reason}: "
            f"{d.detail[:120]}"
        )


@dead_letters_app.command("replay")
def dead_letters_replay(
    store: StoreOption,
    ids: Annotated[list[int] | None, typer.Argument(help="Letter ids; none: --all.")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Every parked letter.")] = False,
) -> None:
    """Ask the running service to process parked letters again (after a fix or upgrade)."""
    if not ids and not replay_all:
        typer.echo("deadletters: give letter ids or --all", err=True)
        raise typer.Exit(2)
    marked = _letters(store, lambda s: s.request_replay(None if replay_all else ids))
    typer.echo(f"{marked} dead letter(s) marked for replay; the service replays them shortly")
