"""Voice-safety rules: which turns may be looked up, and which replies may be stored.

A wrong cached answer is worse than a slow one, so every rule errs towards the LLM:

- only caller responses are cached (greetings and reminders may carry call data and are
  cheap or rare anyway);
- a caller line with personal data (any digit, an e-mail address, a spoken number run,
  "my name is ...") is neither looked up nor stored, nor is a turn whose context (the
  agent's previous line) carries digits;
- a reply that used a tool, carried any action (end call, transfer, digits, interrupts,
  metadata), that the agent marked ``NoCache``, that speaks a dynamic variable value or
  call data, or that repeats personal data the caller gave earlier in the call is never
  stored;
- a turn whose agent reads dynamic variables into its prompt (``Agent.cache_variables``)
  and has them set is never cached: its reply may depend on who is calling.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from switchboard.agents.base import Turn, TurnKind

_DIGIT = re.compile(r"\d")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+|\b\w+ at \w+ dot (?:com|net|org|edu|co|io)\b", re.I)
_NUMBER_WORDS = (
    "zero|oh|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
    "fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|"
    "sixty|seventy|eighty|ninety|hundred|thousand|double|triple"
)
#: Four or more number words in a row: a phone, card, account or date of birth read aloud.
_SPOKEN_NUMBER = re.compile(rf"\b(?:(?:{_NUMBER_WORDS})[\s,-]+){{3,}}(?:{_NUMBER_WORDS})\b", re.I)
_SELF_DISCLOSURE = re.compile(
    r"\b(?:my name(?:'s| is)|name is|i am called|"
    r"my (?:phone|number|cell|mobile|e-?mail|address|date of birth|birthday|birth date|"
    r"card|credit card|insurance (?:id|number)|policy number|account|social security|ssn))\b",
    re.I,
)


def personal_data(text: str) -> str | None:
    """Which kind of personal data ``text`` seems to carry, or ``None``."""
    if _DIGIT.search(text):
        return "digits"
    if _EMAIL.search(text):
        return "email"
    if _SPOKEN_NUMBER.search(text):
        return "spoken_number"
    if _SELF_DISCLOSURE.search(text):
        return "self_disclosure"
    return None


def lookup_refusal(turn: Turn, agent_line: str, cache_variables: Iterable[str]) -> str | None:
    """Why this turn must go to the agent without the cache, or ``None``."""
    if turn.kind is not TurnKind.RESPONSE:
        return turn.kind.value
    caller = turn.last_user_text
    if not caller.strip():
        return "no_caller_line"
    if personal_data(caller) is not None:
        return "personal_data"
    if _DIGIT.search(agent_line):
        return "personal_data_context"
    variables = turn.dynamic_variables
    if any(str(variables.get(name) or "").strip() for name in cache_variables):
        return "dynamic_variables"
    return None


def reply_refusal(
    chunks: Sequence[str],
    *,
    used_tool: bool,
    action: bool,
    marked: bool,
    variables: Mapping[str, str],
    call: Mapping[str, Any] | None,
    earlier: Sequence[str] = (),
) -> str | None:
    """Why a finished reply must not be stored, or ``None``."""
    if marked:
        return "agent_marked"
    if used_tool:
        return "tool"
    if action:
        return "action"
    text = "".join(chunks)
    if not text.strip():
        return "empty"
    lowered = text.lower()
    for value in _call_values(variables, call):
        if value.lower() in lowered:
            return "call_data"
    if _repeats_disclosure(text, earlier):
        return "earlier_personal_data"
    return None


_DISCLOSED = re.compile(r"\d{2,}|[\w.+-]+@[\w-]+\.[\w.]+|\b[A-Z][a-z]+\b")


def _repeats_disclosure(reply: str, earlier: Sequence[str]) -> bool:
    """Whether the reply repeats something personal the caller said earlier in the call.

    The key only sees the last two lines, but the model sees the whole call: "Sure, Jordan,
    we open at 8" must not be served to the next caller. Names (capitalised words), digit
    runs and e-mail addresses from earlier caller lines that carried personal data are
    looked for in the reply.
    """
    disclosed: set[str] = set()
    for line in earlier:
        if personal_data(line) is None:
            continue
        for match in _DISCLOSED.finditer(line):
            token = match.group(0)
            if token[0].isupper() and (match.start() == 0 or token.lower() in _NOT_DISCLOSED):
                continue  # the line's first word, or an ordinary word
            disclosed.add(token.lower())
    if not disclosed:
        return False
    lowered = reply.lower()
    words = set(re.findall(r"[a-z]+", lowered))
    return any(
        (token in lowered) if (token[0].isdigit() or "@" in token) else (token in words)
        for token in disclosed
    )


_NOT_DISCLOSED = frozenset({"i", "my", "the", "yes", "no", "hi", "hello", "thanks", "okay"})


def _call_values(variables: Mapping[str, str], call: Mapping[str, Any] | None) -> list[str]:
    values = [v.strip() for v in variables.values() if isinstance(v, str)]
    if call:
        for field in ("from_number", "to_number", "call_id"):
            value = call.get(field)
            if isinstance(value, str):
                values.append(value.strip())
        metadata = call.get("metadata")
        if isinstance(metadata, dict):
            values.extend(v.strip() for v in metadata.values() if isinstance(v, str))
    return [v for v in values if len(v) >= 2]
