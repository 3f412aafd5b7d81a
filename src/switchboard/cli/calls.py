"""``switchboard calls``: list live calls and act on one through the node that owns it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import msgspec
import typer
from redis.exceptions import RedisError

from switchboard.connections import describe
from switchboard.control.client import CallControl, CommandFailed
from switchboard.control.directory import LiveCall, NodeInfo

T = TypeVar("T")

calls_app = typer.Typer(
    name="calls",
    help="Live calls of a distributed deployment: list them, speak on one, transfer, end.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)

RedisUrl = Annotated[
    str | None,
    typer.Option("--redis-url", help="The deployment's Redis (default: $SWITCHBOARD_REDIS_URL)."),
]
Namespace = Annotated[
    str | None,
    typer.Option(help="Key prefix of the deployment (default: $SWITCHBOARD_REDIS_NAMESPACE)."),
]
CommandId = Annotated[
    str | None,
    typer.Option(
        "--id",
        help="Command id: run again with the same id after a timeout, and it is carried out "
        "at most once (default: a fresh id).",
    ),
]


def _run(url: str | None, namespace: str | None, act: Callable[[CallControl], Awaitable[T]]) -> T:
    url = url or os.environ.get("SWITCHBOARD_REDIS_URL")
    if not url:
        typer.echo("calls: no Redis given: pass --redis-url or set SWITCHBOARD_REDIS_URL", err=True)
        raise typer.Exit(2)
    ns = namespace or os.environ.get("SWITCHBOARD_REDIS_NAMESPACE") or "switchboard:"

    async def main() -> T:
        control = CallControl.from_url(url, namespace=ns)
        try:
            return await act(control)
        finally:
            await control.aclose()

    try:
        return asyncio.run(main())
    except CommandFailed as exc:
        typer.echo(f"calls: {exc}", err=True)
        raise typer.Exit(1) from None
    except (RedisError, OSError) as exc:
        typer.echo(f"calls: Redis at {describe(url)} is unreachable ({exc})", err=True)
        raise typer.Exit(2) from None


@calls_app.command("list")
def list_calls(
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every live call, the node that holds it, and whether that node is alive."""

    async def act(control: CallControl) -> tuple[list[LiveCall], list[NodeInfo]]:
        return await control.calls(), await control.nodes()

    calls, nodes = _run(redis_url, namespace, act)
    if json:
        typer.echo(msgspec.json.encode({"calls": calls, "nodes": nodes}).decode())
        return
    from rich.console import Console
    from rich.table import Table

    now_ms = time.time() * 1000
    table = Table("call_id", "node", "epoch", "for (s)", "status")
    for call in calls:
        status = "live" if call.owner_alive else "[red]orphaned[/]"
        age = f"{(now_ms - call.since_ms) / 1000:.0f}"
        table.add_row(call.call_id, call.owner, str(call.epoch), age, status)
    console = Console()
    console.print(table)
    console.print(f"{len(calls)} live call(s) on {len(nodes)} node(s) with a heartbeat")


@calls_app.command()
def say(
    call_id: Annotated[str, typer.Argument(help="The call.")],
    text: Annotated[str, typer.Argument(help="What the agent says now.")],
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
    command_id: CommandId = None,
) -> None:
    """Speak TEXT on the call now (an agent_interrupt sent by the node that holds it)."""
    reply = _run(redis_url, namespace, lambda c: c.say(call_id, text, command_id=command_id))
    typer.echo(f"said on {call_id} (node {reply.node})")


@calls_app.command()
def transfer(
    call_id: Annotated[str, typer.Argument(help="The call.")],
    number: Annotated[str, typer.Argument(help="Where to transfer it (E.164).")],
    text: Annotated[str, typer.Option("--say", help="Say this first.")] = "",
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
    command_id: CommandId = None,
) -> None:
    """Transfer the call to NUMBER."""
    reply = _run(
        redis_url, namespace, lambda c: c.transfer(call_id, number, text, command_id=command_id)
    )
    typer.echo(f"transfer of {call_id} to {number} sent (node {reply.node})")


@calls_app.command()
def end(
    call_id: Annotated[str, typer.Argument(help="The call.")],
    text: Annotated[str, typer.Option("--say", help="Say this first.")] = "",
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
    command_id: CommandId = None,
) -> None:
    """End the call."""
    reply = _run(redis_url, namespace, lambda c: c.end(call_id, text, command_id=command_id))
    typer.echo(f"end of {call_id} sent (node {reply.node})")
