"""Agent files: both formats load, and every mistake stops startup naming the file and field."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from switchboard.agents.agent_file import AgentFileError
from switchboard.agents.base import EndCall, Turn, TurnKind
from switchboard.agents.loader import load_agent
from switchboard.agents.scripted import ScriptedAgent
from switchboard.config import builtin_example
from switchboard.protocol.inbound import Utterance

MINIMAL = """\
greeting: Hello.
reminder: Still there?
fallback: Sorry?
"""


def write(tmp_path: Path, text: str, name: str = "agent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(path: Path) -> AgentFileError:
    with pytest.raises(AgentFileError) as info:
        load_agent(path)
    return info.value


def test_the_builtin_receptionist_loads_as_a_scripted_agent() -> None:
    assert isinstance(load_agent(builtin_example("receptionist.yaml")), ScriptedAgent)


def test_a_toml_agent_file_works_like_yaml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        agent = "scripted"
        greeting = "Hi {{ customer_name | there }}."
        reminder = "Still there?"
        fallback = "Sorry?"

        [[intents]]
        name = "bye"
        keywords = ["bye"]
        reply = "Goodbye, {{ first_name }}."
        end_call = true

        [[intents]]
        name = "order"
        keywords = ["order"]
        reply = "{{ size }} pizza, coming up."

        [[intents.slots]]
        name = "size"
        ask = "Which size?"
        patterns = ['(?P<value>small|medium|large)']
        any_answer = false
        """,
        name="agent.toml",
    )
    agent = load_agent(path)
    assert isinstance(agent, ScriptedAgent)
    assert agent.needs_call_details
    state: dict[str, object] = {}

    def reply(text: str) -> tuple[str, object]:
        turn = Turn(
            call_id="c",
            kind=TurnKind.RESPONSE,
            response_id=1,
            transcript=[Utterance(role="user", content=text)],
            state=state,
            dynamic_variables={"first_name": "Ada"},
        )
        return agent.reply(turn)

    assert reply("I'd like to order") == ("Which size?", None)
    assert reply("Large, please.") == ("Large pizza, coming up.", None)
    assert reply("bye") == ("Goodbye, Ada.", EndCall())


def test_agent_defaults_to_scripted(tmp_path: Path) -> None:
    assert isinstance(load_agent(write(tmp_path, MINIMAL)), ScriptedAgent)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nope.yaml")
    assert error.path == tmp_path / "nope.yaml"
    assert "file not found" in str(error)
    assert str(tmp_path / "nope.yaml") in str(error)


def test_an_unknown_agent_kind_names_the_agent_field(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "agent: gpt\n" + MINIMAL))
    assert error.field == "agent"
    assert "'gpt'" in str(error)


def test_bad_yaml_reports_the_line(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, MINIMAL + "intents: [\n  - name: x\n"))
    assert "invalid YAML" in str(error)
    assert "line" in str(error)


def test_bad_toml_is_an_agent_file_error(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, 'greeting = "unterminated\n', name="agent.toml"))
    assert "invalid TOML" in str(error)


def test_a_duplicated_yaml_key_is_refused(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, MINIMAL + "fallback: Pardon?\n"))
    assert "duplicate key 'fallback'" in str(error)


def test_an_unsupported_extension_is_refused(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, MINIMAL, name="agent.json"))
    assert ".yaml, .yml or .toml" in str(error)


@pytest.mark.parametrize("text", ["", "- a list\n", "just text\n"])
def test_the_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    assert "mapping" in str(load_error(write(tmp_path, text)))


INTENT = "intents:\n  - name: hours\n    keywords: [hours]\n    reply: Nine to five.\n"


def intent(old: str = "", new: str = "", extra: str = "") -> str:
    """The minimal file plus one intent, edited."""
    return MINIMAL + (INTENT.replace(old, new) if old else INTENT) + extra


def slot(fields: str) -> str:
    return intent(extra=f"    slots:\n      - {{{fields}}}\n")


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (intent("keywords", "keywrods"), "intents[0].keywrods", "unknown field"),
        (MINIMAL + "greting: Hi\n", "greting", "unknown field"),
        ("greeting: Hi\nreminder: Still there?\n", "fallback", "missing"),
        (intent("[hours]", "[yes]"), "intents[0].keywords[0]", "Expected `str`"),
        (intent("[hours]", "['!!']"), "intents[0].keywords[0]", "letters or digits"),
        (intent("keywords: [hours]", "patterns: ['(']"), "intents[0].patterns[0]", "regex"),
        (intent("[hours]", "[]"), "intents[0]", "keywords or patterns"),
        (intent("Nine to five.", "''"), "intents[0].reply", "must not be empty"),
        (intent("Nine to five.", "Hi {{ name"), "intents[0].reply", "unbalanced"),
        (intent("Nine to five.", "Hi {{ }}"), "intents[0].reply", "variable name"),
        (MINIMAL.replace("Hello.", "Hi }} there"), "greeting", "unbalanced"),
        (MINIMAL.replace("Sorry?", "''"), "fallback", "must not be empty"),
        (intent(extra="    transfer: '555-0100'\n"), "intents[0].transfer", "E.164"),
        (
            intent(extra="    transfer: '+14155550100'\n    end_call: true\n"),
            "intents[0]",
            "cannot both be set",
        ),
        (intent(extra=INTENT.removeprefix("intents:\n")), "intents[1].name", "unique"),
        (slot("name: day, ask: Which day, any_answer: false"), "intents[0].slots[0]", "never"),
        (slot("name: _day, ask: Which day"), "intents[0].slots[0].name", "usable name"),
        (slot("name: day, ask: ''"), "intents[0].slots[0].ask", "must not be empty"),
        (
            slot("name: day, ask: Which day, answer: ['[']"),
            "intents[0].slots[0].answer[0]",
            "regex",
        ),
    ],
)
def test_a_mistake_in_the_file_names_its_field(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    path = write(tmp_path, text)
    error = load_error(path)
    assert error.path == path
    assert error.field == field
    assert reason in str(error)
    assert str(error).startswith(f"{path}: {field}: ")


@pytest.mark.parametrize("language", ["yaml", "toml"])
def test_the_documented_example_loads(tmp_path: Path, language: str) -> None:
    doc = (Path(__file__).parents[1] / "docs" / "agent-files.md").read_text(encoding="utf-8")
    blocks = re.findall(rf"```{language}\n(.*?)```", doc, re.DOTALL)
    assert blocks
    agent = load_agent(write(tmp_path, blocks[0], name=f"agent.{language}"))
    assert isinstance(agent, ScriptedAgent)
    turn = Turn(
        call_id="c",
        kind=TurnKind.RESPONSE,
        response_id=1,
        transcript=[Utterance(role="user", content="I'd like to book on Friday afternoon.")],
        state={},
    )
    assert agent.reply(turn) == ("And what is the visit for?", None)
