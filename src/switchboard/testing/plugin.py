"""The pytest plugin (entry point ``pytest11``): fixtures and scenario collection.

Loaded by pytest in every project that has switchboard installed, so this module imports
nothing heavy until a fixture or a scenario is used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from switchboard.testing.agent_call import AgentCall
    from switchboard.testing.fake_llm import FakeLLMServer

#: the key the fake server accepts (any key works; the SDK insists on one)
FAKE_API_KEY = "sk-switchboard-fake"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "switchboard_scenarios",
        "directories whose *.yaml scenario files run as tests (switchboard.testing)",
        type="paths",
        default=[],
    )
    parser.addini(
        "switchboard_agent", "agent file the scenario files are played against", default=""
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    dirs = [Path(p).resolve() for p in parent.config.getini("switchboard_scenarios")]
    if not any(file_path.resolve().is_relative_to(d) for d in dirs):
        return None
    from switchboard.testing.scenarios import ScenarioFile

    file: pytest.Collector = ScenarioFile.from_parent(parent, path=file_path)
    return file


try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - pytest then says async fixtures need a plugin
    _async_fixture = pytest.fixture  # type: ignore[assignment]


@_async_fixture
async def agent_call() -> AsyncIterator[Callable[..., Awaitable[AgentCall]]]:
    """``call = await agent_call(agent_or_file, dynamic_variables=..., metadata=...)``: a
    greeted call, in-process; hung up after the test. Needs pytest-asyncio."""
    from switchboard.testing.agent_call import start_call

    calls: list[AgentCall] = []

    async def factory(agent: Any, **kwargs: Any) -> AgentCall:
        call = await start_call(agent, **kwargs)
        calls.append(call)
        return call

    try:
        yield factory
    finally:
        for call in calls:
            await call.hang_up()


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeLLMServer]:
    """The fake OpenAI-compatible server, started once per session (its own thread)."""
    from switchboard.testing.fake_llm import FakeLLMServer

    server = FakeLLMServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_openai(
    fake_openai_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> FakeLLMServer:
    """The fake server with default behaviour and fresh counters, and ``OPENAI_BASE_URL``
    / ``OPENAI_API_KEY`` pointing at it for this test. Set ``.config`` to change how it
    answers; ``.stats`` holds what it saw."""
    from switchboard.testing.fake_llm import FakeLLMConfig

    fake_openai_server.config = FakeLLMConfig()
    fake_openai_server.stats.reset()
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_API_KEY)
    return fake_openai_server
