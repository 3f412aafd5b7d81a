"""The scripted agent: a dialogue read from an agent file, no LLM and no API key.

It is the embedded default and the agent the simulator drives, so it must be cheap and
deterministic: every regex and template is compiled when the file loads, and a turn is a
few regex searches over the caller's last utterance (microseconds).

Matching sees ASR text *normalised*: lower case, apostrophes dropped ("what's" -> "whats"),
every other run of non-alphanumerics a single space. Keywords match whole words or phrases;
patterns are regexes over the normalised text. Intents are tried in file order.

An intent with ``slots`` is a form: it asks for each missing slot in turn, reads answers
with patterns, and speaks its reply once all are filled. Slot values are stored in
``Turn.state`` under the slot's name (so replies can say ``{{ patient_name }}``), and the
open form under ``FORM_KEY``. Nothing per call lives on ``self``: one instance serves all
calls at once, and state must survive reconnects to other nodes.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from switchboard.agents.agent_file import AgentFileError
from switchboard.agents.base import Action, Agent, EndCall, Transfer, Turn, TurnKind
from switchboard.agents.templating import Template, TemplateError, is_variable_name

#: Key in ``Turn.state`` holding the open form: ``{"intent": name, "asked": slot name}``.
FORM_KEY = "_form"
#: Call-object fields that replies may use as ``{{ from_number }}`` and so on.
CALL_FIELDS = ("from_number", "to_number", "direction", "call_type", "agent_id")

_TOKEN = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
_NO_APOSTROPHES = str.maketrans("", "", "'\u2019")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


class SlotSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One piece of information a form collects (see ``docs/agent-files.md``)."""

    name: str
    ask: str
    patterns: list[str] = []
    answer: list[str] = []
    any_answer: bool = True
    retry: str = ""


class IntentSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    reply: str
    keywords: list[str] = []
    patterns: list[str] = []
    end_call: bool = False
    transfer: str | None = None
    slots: list[SlotSpec] = []


class ScriptSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The scripted part of an agent file, validated strictly: unknown keys are errors."""

    greeting: str
    reminder: str
    fallback: str
    agent: Literal["scripted"] = "scripted"
    name: str = ""
    missing_variable: str = ""
    intents: list[IntentSpec] = []


def normalise(text: str) -> str:
    """ASR text as matching sees it (see the module docstring)."""
    return " ".join(_TOKEN.findall(text)).lower().translate(_NO_APOSTROPHES)


class _Utterance:
    """The normalised utterance, able to map a match back to the words the caller said.

    Captured values keep the caller's casing and punctuation ("Tuesday at 3:30 PM", not
    "tuesday at 3 30 pm"), because they are spoken back and stored for people to read.
    """

    __slots__ = ("_spans", "_starts", "norm", "raw")

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.norm = normalise(raw)
        # Where each word lies in ``raw``: only a capture needs it (``_index``).
        self._spans: list[tuple[int, int]] | None = None
        self._starts: list[int] = []

    def _index(self) -> list[tuple[int, int]]:
        # ``norm`` is the words joined by single spaces, and no word is empty or holds a
        # space, so its split gives each word's normalised length.
        spans = [t.span() for t in _TOKEN.finditer(self.raw)]
        starts: list[int] = []
        position = 0
        for word in self.norm.split(" "):
            starts.append(position)
            position += len(word) + 1
        self._spans, self._starts = spans, starts
        return spans

    def original(self, start: int, end: int) -> str:
        """The caller's own text for the words overlapping ``norm[start:end]``."""
        norm = self.norm
        while start < end and norm[start] == " ":
            start += 1
        while end > start and norm[end - 1] == " ":
            end -= 1
        if end <= start:
            return ""
        spans = self._spans if self._spans is not None else self._index()
        first = bisect_right(self._starts, start) - 1
        last = bisect_right(self._starts, end - 1) - 1
        return self.raw[spans[max(first, 0)][0] : spans[last][1]]

    def capture(self, pattern: re.Pattern[str]) -> str:
        """The ``value`` group (or whole match) of ``pattern`` in the caller's words, or ""."""
        match = pattern.search(self.norm)
        if match is None:
            return ""
        group = "value" if "value" in pattern.groupindex else 0
        start, end = match.span(group)
        return self.original(start, end) if start >= 0 else ""


class _Slot:
    __slots__ = ("answer", "any_answer", "ask", "name", "patterns", "retry")

    def __init__(self, spec: SlotSpec, field: str, source: Path | None) -> None:
        if not is_variable_name(spec.name) or spec.name.startswith("_"):
            raise AgentFileError(source, f"{field}.name", f"{spec.name!r} is not a usable name")
        self.name = spec.name
        self.ask = _template(spec.ask, f"{field}.ask", source, required=True)
        self.retry = _template(spec.retry or spec.ask, f"{field}.retry", source)
        self.patterns = _patterns(spec.patterns, f"{field}.patterns", source)
        self.answer = _patterns(spec.answer, f"{field}.answer", source)
        self.any_answer = spec.any_answer
        if not (self.any_answer or self.patterns or self.answer):
            raise AgentFileError(
                source, field, "can never be filled: give patterns, answer or any_answer: true"
            )


class _Intent:
    __slots__ = ("action", "keywords", "name", "patterns", "reply", "slots")

    def __init__(self, spec: IntentSpec, field: str, source: Path | None) -> None:
        self.name = spec.name
        self.keywords = _keywords(spec.keywords, f"{field}.keywords", source)
        self.patterns = _patterns(spec.patterns, f"{field}.patterns", source)
        if self.keywords is None and not self.patterns:
            raise AgentFileError(source, field, "needs keywords or patterns to match")
        self.reply = _template(spec.reply, f"{field}.reply", source, required=True)
        self.action = _action(spec, field, source)
        self.slots = tuple(
            _Slot(slot, f"{field}.slots[{i}]", source) for i, slot in enumerate(spec.slots)
        )
        names = [slot.name for slot in self.slots]
        if len(set(names)) != len(names):
            raise AgentFileError(source, f"{field}.slots", "slot names must be unique")

    def matches(self, norm: str) -> bool:
        if self.keywords is not None and self.keywords.search(norm) is not None:
            return True
        return any(pattern.search(norm) is not None for pattern in self.patterns)


class ScriptedAgent(Agent):
    """Answers from an agent file: greeting, intents, forms with slots, fallback, reminder."""

    def __init__(self, spec: ScriptSpec, source: Path | None = None) -> None:
        self.name = spec.name
        self._greeting = _template(spec.greeting, "greeting", source)
        self._reminder = _template(spec.reminder, "reminder", source, required=True)
        self._fallback = _template(spec.fallback, "fallback", source, required=True)
        self._missing = spec.missing_variable
        self._intents = tuple(
            _Intent(intent, f"intents[{i}]", source) for i, intent in enumerate(spec.intents)
        )
        self._by_name: dict[str, _Intent] = {}
        for i, intent in enumerate(self._intents):
            if not intent.name.strip() or intent.name in self._by_name:
                raise AgentFileError(source, f"intents[{i}].name", "must be unique and non-empty")
            self._by_name[intent.name] = intent
        # Personalised greetings wait for call_details (which carries the variables).
        self.needs_call_details = bool(self._greeting.variables)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], source: Path | None = None) -> ScriptedAgent:
        """Validate a parsed agent file; errors name the file and the field."""
        try:
            script = msgspec.convert(spec, ScriptSpec)
        except msgspec.ValidationError as exc:
            raise AgentFileError.from_validation(source, exc) from None
        return cls(script, source)

    async def respond(self, turn: Turn) -> AsyncIterator[str | Action]:
        text, action = self.reply(turn)
        if text:
            yield text
        if action is not None:
            yield action

    def reply(self, turn: Turn) -> tuple[str, Action | None]:
        """The whole answer to ``turn``, synchronously (``respond`` streams it)."""
        if turn.kind is TurnKind.GREETING:
            return self._say(self._greeting, turn), None
        form = self._open_form(turn.state)
        if turn.kind is TurnKind.REMINDER:
            nudge = self._say(self._reminder, turn)
            if form is None:
                return nudge, None
            return _join(nudge, self._say(form[1].ask, turn)), None
        if form is None:
            return self._answer(turn)
        return self._continue(form, turn)

    def _answer(self, turn: Turn) -> tuple[str, Action | None]:
        text = turn.last_user_text
        intent = self._match(normalise(text))
        if intent is None:
            return self._say(self._fallback, turn), None
        if intent.slots:
            return self._start(intent, _Utterance(text), turn)
        return self._say(intent.reply, turn), intent.action

    def _continue(self, form: tuple[_Intent, _Slot], turn: Turn) -> tuple[str, Action | None]:
        """One utterance inside a form. The order below is the documented contract:
        values stated anywhere, then a way out, then the answer to the question asked,
        then a side question (answered, and the question asked again), then a retry."""
        intent, asked = form
        said = _Utterance(turn.last_user_text)
        state = turn.state
        if _capture_patterns(intent, said, state):
            return self._advance(intent, turn)
        other = self._match(said.norm)
        if other is intent:
            other = None
        if other is not None and other.action is not None and not other.slots:
            state.pop(FORM_KEY, None)
            return self._say(other.reply, turn), other.action
        if _capture_answer(asked, said, state):
            return self._advance(intent, turn)
        if other is None:
            return self._say(asked.retry, turn), None
        if other.slots:
            state.pop(FORM_KEY, None)
            return self._start(other, said, turn)
        return _join(self._say(other.reply, turn), self._say(asked.ask, turn)), None

    def _start(self, intent: _Intent, said: _Utterance, turn: Turn) -> tuple[str, Action | None]:
        _capture_patterns(intent, said, turn.state)
        return self._advance(intent, turn)

    def _advance(self, intent: _Intent, turn: Turn) -> tuple[str, Action | None]:
        """Ask for the first missing slot, or finish the form with its reply."""
        state = turn.state
        for slot in intent.slots:
            if not _filled(state.get(slot.name)):
                state[FORM_KEY] = {"intent": intent.name, "asked": slot.name}
                return self._say(slot.ask, turn), None
        state.pop(FORM_KEY, None)
        return self._say(intent.reply, turn), intent.action

    def _open_form(self, state: dict[str, Any]) -> tuple[_Intent, _Slot] | None:
        """The form this call is in and the slot it asked for.

        Tolerant by design: a call may resume after the file changed (the intent or slot is
        gone) or with state written by someone else; then the form is dropped or realigned.
        """
        form = state.get(FORM_KEY)
        if form is None:
            return None
        name = form.get("intent") if isinstance(form, dict) else None
        intent = self._by_name.get(name) if isinstance(name, str) else None
        if intent is not None:
            asked = form.get("asked")
            slot = next((s for s in intent.slots if s.name == asked), None)
            if slot is None or _filled(state.get(slot.name)):
                slot = next((s for s in intent.slots if not _filled(state.get(s.name))), None)
            if slot is not None:
                return intent, slot
        state.pop(FORM_KEY, None)
        return None

    def _match(self, norm: str) -> _Intent | None:
        for intent in self._intents:
            if intent.matches(norm):
                return intent
        return None

    def _say(self, template: Template, turn: Turn) -> str:
        if template.static is not None:
            return template.static
        call_fields: dict[str, Any] = {"call_id": turn.call_id}
        if turn.call:
            for key in CALL_FIELDS:
                value = turn.call.get(key)
                if value is not None:
                    call_fields[key] = value
        scopes = (turn.state, turn.dynamic_variables, call_fields)
        return template.render(scopes, self._missing)


def _capture_patterns(intent: _Intent, said: _Utterance, state: dict[str, Any]) -> bool:
    """Fill any slot whose ``patterns`` match; a restated value replaces the old one."""
    captured = False
    for slot in intent.slots:
        for pattern in slot.patterns:
            value = said.capture(pattern)
            if value:
                state[slot.name] = value
                captured = True
                break
    return captured


def _capture_answer(slot: _Slot, said: _Utterance, state: dict[str, Any]) -> bool:
    """Read a direct answer to ``slot``'s question."""
    for pattern in slot.answer:
        value = said.capture(pattern)
        if value:
            state[slot.name] = value
            return True
    if slot.any_answer and said.norm:
        state[slot.name] = said.original(0, len(said.norm))
        return True
    return False


def _filled(value: object) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _join(first: str, second: str) -> str:
    return f"{first} {second}" if first and second else first or second


def _template(text: str, field: str, source: Path | None, required: bool = False) -> Template:
    if required and not text.strip():
        raise AgentFileError(source, field, "must not be empty (silence is the worst answer)")
    try:
        return Template(text)
    except TemplateError as exc:
        raise AgentFileError(source, field, str(exc)) from None


def _patterns(sources: list[str], field: str, source: Path | None) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for i, pattern in enumerate(sources):
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise AgentFileError(source, f"{field}[{i}]", f"invalid regex: {exc}") from None
    return tuple(compiled)


def _keywords(keywords: list[str], field: str, source: Path | None) -> re.Pattern[str] | None:
    """One regex per intent, matching any keyword as whole words of the normalised text."""
    phrases = []
    for i, keyword in enumerate(keywords):
        phrase = normalise(keyword)
        if not phrase:
            raise AgentFileError(source, f"{field}[{i}]", "a keyword needs letters or digits")
        phrases.append(re.escape(phrase))
    if not phrases:
        return None
    return re.compile(rf"(?<!\S)(?:{'|'.join(phrases)})(?!\S)")


def _action(spec: IntentSpec, field: str, source: Path | None) -> Action | None:
    if spec.transfer is not None:
        if spec.end_call:
            raise AgentFileError(source, field, "end_call and transfer cannot both be set")
        if _E164.fullmatch(spec.transfer) is None:
            raise AgentFileError(
                source, f"{field}.transfer", "a phone number in E.164 form, like +14155550100"
            )
        return Transfer(spec.transfer)
    return EndCall() if spec.end_call else None
