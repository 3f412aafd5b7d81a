"""The event-driven checks of ``switchboard validate``, against real parts: a node on the
event-driven profile (Redis state, command channel and Streams bus), the archive and
escalation services as their own processes, the archive read from its SQLite file as
the cluster state's ``archive_db`` names it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchboard.cluster.processes import Child
from switchboard.services.escalation.rules import parse_rules
from switchboard.validate.events import (
    ARCHIVE,
    ESCALATION,
    ESCALATION_LINE,
    archive_check,
    escalation_check,
    escalation_plan,
    service_rules,
)
from switchboard.validate.run import ValidateOptions, validate
from switchboard.validate.target import cluster_target, url_target
from tests.fixtures.agents import EchoAgent
from tests.fixtures.conditions import eventually
from tests.fixtures.server import RunningServer, running_server
from tests.fixtures.services import start_service, until

pytestmark = pytest.mark.system

RULES = """
transfer_number: "+15550100"
handoff_line: "Let me connect you with a colleague who can help."
rules:
  - {name: asks_for_human, when: asks_for_human, count: 2, phrases: [manager]}
"""


@contextlib.asynccontextmanager
async def event_node(url: str, namespace: str, tmp: Path) -> AsyncIterator[RunningServer]:
    async with running_server(
        EchoAgent(),
        profile="event-driven",
        redis_url=url,
        bus_url=url,
        redis_namespace=namespace,
        node_id="node-1",
        outbox_dir=tmp / "outbox",
        call_details=False,
    ) as srv:
        shared = srv.app.shared
        assert shared is not None
        await eventually(
            lambda: shared.listener is not None and shared.listener.subscribed.is_set()
        )
        yield srv


@contextlib.asynccontextmanager
async def services(redis_url: str, namespace: str, tmp: Path) -> AsyncIterator[dict[str, Child]]:
    rules = tmp / "rules.yaml"
    rules.write_text(RULES)
    common = ["--bus", redis_url, "--namespace", namespace]
    escalation = [*common, "--redis-url", redis_url, "--rules", str(rules)]
    started = {
        "archive": start_service("archive", [*common, "--db", str(tmp / "archive.db")], tmp),
        "escalation": start_service(
            "escalation", [*escalation, "--db", str(tmp / "escalation.db")], tmp
        ),
    }
    try:
        for name, child in started.items():

            async def opened(name: str = name) -> bool:
                return (tmp / f"{name}.db").exists()

            await until(opened, child=child)
        yield started
    finally:
        for child in started.values():
            child.stop()


async def test_turns_archived_once_and_one_escalation_pass(
    redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    async with (
        services(redis_server_url, redis_namespace, tmp_path) as children,
        event_node(redis_server_url, redis_namespace, tmp_path) as node,
    ):
        state = {
            "url": node.ws_url,
            "profile": "event-driven",
            "nodes": [{"pid": 1, "port": node.port, "node_id": "node-1"}],
            "archive_db": str(tmp_path / "archive.db"),
            "services": {name: child.pid for name, child in children.items()},
        }
        (tmp_path / "state.json").write_text(json.dumps(state))
        target = cluster_target(tmp_path / "state.json")
        assert target.archive_db is not None
        archived = await archive_check(target.url, target.archive_db, calls=4, turns=3)
        # the line and the number of asks come from the running service's own rules
        plan = escalation_plan(service_rules(dict(target.services)["escalation"]), None)
        assert plan == (ESCALATION_LINE, 2)
        escalated = await escalation_check(target.url, target.archive_db, *plan)
    assert archived.passed, archived
    assert archived.figures["turns completed (simulator)"] == 12
    assert archived.figures["turns archived"] == 12
    assert archived.figures["calls archived"] == 4
    assert escalated.passed, escalated
    f = escalated.figures
    assert (f["handoff lines"], f["transfers"], f["asks before the handoff"]) == (1, 1, 2)
    assert f["transfer number"] == "+15550100"
    assert f["archived rule"] == "asks_for_human"
    assert f["caller line"] == ESCALATION_LINE


async def test_an_archive_nothing_writes_and_no_matching_rule_fail(
    redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    async with (
        services(redis_server_url, redis_namespace, tmp_path),
        event_node(redis_server_url, redis_namespace, tmp_path) as node,
    ):
        # an archive no service writes: nothing the run did reaches it
        stale = str(tmp_path / "elsewhere.db")
        archived = await archive_check(node.ws_url, stale, calls=2, turns=2, deadline_s=1.0)
        # a line no rule matches: no handoff within the deadline
        escalated = await escalation_check(
            node.ws_url, str(tmp_path / "archive.db"), line="Where are you?", deadline_s=2.0
        )
        # a line the agent answers with its own transfer ("human"): the rule never fires
        preempted = await escalation_check(
            node.ws_url, str(tmp_path / "archive.db"), line="A human, or your manager."
        )
    assert not archived.passed
    assert archived.figures["turns completed (simulator)"] == 4
    assert archived.figures["turns archived"] == 0
    assert not escalated.passed
    assert "no escalation reached the call" in escalated.detail
    assert not preempted.passed
    assert preempted.figures["agent transferred at ask"] == 1
    assert "transferred the call itself" in preempted.detail


def test_the_escalation_line_follows_the_rules() -> None:
    default = parse_rules(
        'transfer_number: "+1555"\nrules: [{name: h, when: asks_for_human, count: 3}]'
    )
    line, asks = escalation_plan(default, None)
    # the default phrases ask for a manager, which the receptionist does not answer itself
    assert (line, asks) == (ESCALATION_LINE, 3)
    own = parse_rules(
        'transfer_number: "+1555"\n'
        "rules: [{name: h, when: asks_for_human, count: 2, phrases: [talk to a person]}]"
    )
    assert escalation_plan(own, None) == ("Please, talk to a person.", 2)
    assert escalation_plan(default, "Get me an operator") == ("Get me an operator", 3)
    only_says = parse_rules("rules: [{name: h, when: asks_for_human, action: say}]")
    assert "no asks_for_human rule that transfers" in str(escalation_plan(only_says, None))
    assert escalation_plan(None, None) == (ESCALATION_LINE, 2)


async def test_against_a_url_the_event_checks_are_not_run(
    redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    async with event_node(redis_server_url, redis_namespace, tmp_path) as node:
        options = ValidateOptions(
            "event-driven", calls=2, capacity=10**6, budget_ms=10_000, duration_s=1.0, turns=2
        )
        report = await validate(url_target(node.ws_url), options)
    assert {ARCHIVE, ESCALATION}.isdisjoint(c.name for c in report.checks)
    assert ARCHIVE in report.not_run
    assert "archive_db" in report.not_run[ESCALATION]
