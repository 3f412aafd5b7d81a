"""Pre-warming: answer a list of caller lines through the agent, storing what is eligible.

Each line is asked as the caller's first question after the agent's greeting (greeting
rendered without call data), which is where frequent questions are asked. Replies go
through the same voice-safety rules as live turns: a line with personal data, or whose
reply used a tool or carried an action, is reported and not stored.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from switchboard.agents.base import Turn, TurnKind
from switchboard.cache import keys
from switchboard.cache.agent import CachedAgent
from switchboard.cache.safety import lookup_refusal
from switchboard.log import get_logger
from switchboard.protocol.inbound import Utterance

_log = get_logger("switchboard.cache")


@dataclass(slots=True)
class WarmReport:
    asked: int = 0
    stored: int = 0
    already: int = 0
    #: lines not stored, by why (personal data, tool, action, agent error, ...)
    skipped: Counter[str] = field(default_factory=Counter)


def read_lines(path: Path) -> list[str]:
    """One caller line per line; blank lines and ``#`` comments are ignored."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


async def greeting_of(agent: CachedAgent) -> str:
    turn = Turn(
        call_id="cache-warm", kind=TurnKind.GREETING, response_id=0, transcript=(), state={}
    )
    said = [item async for item in agent.agent.respond(turn) if isinstance(item, str)]
    return "".join(said)


async def warm(agent: CachedAgent, lines: Iterable[str], concurrency: int = 4) -> WarmReport:
    await agent.prepare()
    report = WarmReport()
    greeting = await greeting_of(agent)
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, line: str) -> None:
        transcript = [Utterance(role="agent", content=greeting), Utterance("user", line)]
        turn = Turn(
            call_id=f"cache-warm-{index}",
            kind=TurnKind.RESPONSE,
            response_id=1,
            transcript=transcript if greeting else transcript[1:],
            state={},
        )
        refusal = lookup_refusal(turn, greeting, agent.cache_variables)
        if refusal is not None:
            report.skipped[refusal] += 1
            return
        key = keys.exact_key(agent.digest, keys.context_line(greeting, {}), keys.normalise(line))
        async with gate:
            if await agent.cache.get(key) is not None:
                report.already += 1
                return
            try:
                async for _ in agent.respond(turn):
                    pass
            except Exception as exc:
                report.skipped[f"agent_error: {type(exc).__name__}"] += 1
                return
            await agent.flush()
            if await agent.cache.get(key) is not None:
                report.stored += 1
            else:
                report.skipped["not_eligible"] += 1

    unique = list(dict.fromkeys(lines))
    report.asked = len(unique)
    await asyncio.gather(*(one(i, line) for i, line in enumerate(unique)))
    return report


def start_and_warm(agent: CachedAgent) -> None:
    """At server start: the agent's semantic tier, and the agent file's ``cache.warm``
    lines answered in the background (the node serves calls meanwhile)."""
    agent.start()
    if agent.policy.warm:
        agent.warm_in_background(_warm_from_policy(agent))


async def _warm_from_policy(agent: CachedAgent) -> None:
    try:
        report = await warm(agent, agent.policy.warm)
    except Exception:
        _log.exception("cache warm-up failed")
        return
    _log.info(
        "cache warmed",
        asked=report.asked,
        stored=report.stored,
        already=report.already,
        skipped=dict(report.skipped),
    )
