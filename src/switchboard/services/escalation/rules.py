"""Escalation rules and the per-call state they read, as pure functions.

A rules file (YAML) names the conditions that hand a live call to a person or alert a
supervisor. ``observe`` folds one event into a call's ``CallTrack`` and returns the
decision when a rule fires. At most one decision per call, ever: the track remembers
that it escalated (also when another instance's ``call.escalated`` comes by). A turn
older than the service's staleness limit (replayed late from a node's spill, or a
backlog) describes a call as it was, not as it is: it is neither counted nor acted on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec
import yaml

from switchboard.events.types import CallEnded, CallEscalated, CallStarted, Event, TurnCompleted

Condition = Literal["asks_for_human", "consecutive_fallbacks", "negative_language", "reminders"]
Action = Literal["transfer", "say", "alert"]

DEFAULT_PHRASES = {
    "asks_for_human": [
        "talk to a person",
        "speak to a person",
        "talk to a human",
        "speak to a human",
        "real person",
        "talk to someone",
        "speak to someone",
        "representative",
        "operator",
        # asked for by rank: no receptionist handles these itself, so the service does
        "manager",
        "supervisor",
    ],
    "negative_language": [
        "angry",
        "furious",
        "ridiculous",
        "useless",
        "terrible",
        "awful",
        "stupid",
        "unacceptable",
        "worst",
        "hate this",
    ],
}
#: Replies that mean the agent did not understand: they count like fallbacks.
NOT_UNDERSTOOD = ("didn't get that", "did not get that", "didn't catch that", "say that again")


class Rule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    when: Condition
    #: how many times the condition must hold (for fallbacks: in a row)
    count: int = 1
    action: Action = "transfer"
    phrases: list[str] | None = None
    number: str | None = None
    line: str | None = None


class RulesFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    rules: list[Rule]
    transfer_number: str | None = None
    handoff_line: str = "Let me connect you with a colleague who can help."
    supervisor_webhook: str | None = None

    def number_for(self, rule: Rule) -> str | None:
        return rule.number or self.transfer_number

    def line_for(self, rule: Rule) -> str:
        return rule.line or self.handoff_line


class RulesError(ValueError):
    """The rules file does not say something we can act on."""


def parse_rules(text: str, source: str = "rules") -> RulesFile:
    try:
        raw = yaml.safe_load(text)
        rules = msgspec.convert(raw, RulesFile)
    except (yaml.YAMLError, msgspec.ValidationError) as err:
        raise RulesError(f"{source}: {err}") from None
    for rule in rules.rules:
        if rule.count < 1:
            raise RulesError(f"{source}: rule {rule.name!r}: count must be at least 1")
        if rule.action == "transfer" and not rules.number_for(rule):
            raise RulesError(f"{source}: rule {rule.name!r} transfers but names no number")
        if rule.action == "alert" and not rules.supervisor_webhook:
            raise RulesError(f"{source}: rule {rule.name!r} alerts but no supervisor_webhook")
    return rules


def load_rules(path: Path) -> RulesFile:
    try:
        text = path.read_text()
    except OSError as err:
        raise RulesError(f"cannot read rules file {path}: {err}") from None
    return parse_rules(text, str(path))


class CallTrack(msgspec.Struct, kw_only=True):
    human_asks: int = 0
    consecutive_fallbacks: int = 0
    negative: int = 0
    reminders: int = 0
    escalated: bool = False
    ended: bool = False


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    rule: str
    action: Action
    line: str
    number: str | None
    detail: str
    trigger_event_id: str


def _mentions(text: str, phrases: list[str]) -> bool:
    return any(phrase in text for phrase in phrases)


def _value(track: CallTrack, rule: Rule) -> int:
    return {
        "asks_for_human": track.human_asks,
        "consecutive_fallbacks": track.consecutive_fallbacks,
        "negative_language": track.negative,
        "reminders": track.reminders,
    }[rule.when]


def observe(
    rules: RulesFile, track: CallTrack, event: Event, *, stale: bool = False
) -> Decision | None:
    """Fold ``event`` into ``track``; the decision if a rule fires now. A ``stale`` turn is
    skipped (lifecycle events still count: a call that ended or escalated stays so)."""
    data = event.data
    if isinstance(data, CallEscalated):
        track.escalated = True
        return None
    if isinstance(data, CallStarted):
        track.ended = False
        return None
    if isinstance(data, CallEnded):
        if data.final:  # a dropped or handed-off socket: the call goes on elsewhere
            track.ended = True
        return None
    if not isinstance(data, TurnCompleted) or data.superseded or data.kind == "greeting":
        return None
    if stale:
        return None
    line = data.caller_line.lower()
    if data.kind == "reminder":
        track.reminders += 1
    else:
        if _mentions(line, _phrases(rules, "asks_for_human")):
            track.human_asks += 1
        if _mentions(line, _phrases(rules, "negative_language")):
            track.negative += 1
    reply = data.reply.lower()
    if data.fallback_reason or any(p in reply for p in NOT_UNDERSTOOD):
        track.consecutive_fallbacks += 1
    elif data.kind == "response":
        track.consecutive_fallbacks = 0
    if track.escalated or track.ended:
        return None
    for rule in rules.rules:
        if _value(track, rule) >= rule.count:
            track.escalated = True
            return Decision(
                call_id=event.call_id,
                rule=rule.name,
                action=rule.action,
                line=rules.line_for(rule),
                number=rules.number_for(rule) if rule.action == "transfer" else None,
                detail=f"{rule.when} x{_value(track, rule)}; caller said: {data.caller_line[:200]}",
                trigger_event_id=event.id,
            )
    return None


def _phrases(rules: RulesFile, when: str) -> list[str]:
    for rule in rules.rules:
        if rule.when == when and rule.phrases:
            return [p.lower() for p in rule.phrases]
    return DEFAULT_PHRASES.get(when, [])
