"""``switchboard cache warm|stats|clear`` against a real valkey and the fake LLM."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from switchboard.cli import app
from switchboard.config import builtin_example
from switchboard.testing.fake_llm import FakeLLMConfig, FakeLLMServer

runner = CliRunner()


def shared(redis_url: str) -> list[str]:
    return ["--profile", "distributed", "--redis-url", redis_url]


@pytest.fixture
def namespace_env(redis_namespace: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SWITCHBOARD_REDIS_NAMESPACE", redis_namespace)
    monkeypatch.setenv("SWITCHBOARD_CACHE_TIMEOUT_MS", "2000")
    return redis_namespace


def test_warm_stores_eligible_replies_then_stats_and_clear(
    tmp_path: Path, fake_llm: FakeLLMServer, redis_server_url: str, namespace_env: str
) -> None:
    fake_llm.config = FakeLLMConfig(reply="We are open from 8 AM to 6 PM on weekdays.")
    lines = tmp_path / "faq.txt"
    lines.write_text(
        "# frequent questions\n"
        "What are your opening hours?\n"
        "Are you open on Saturdays?\n"
        "\n"
        "I'd like to book an appointment.\n"  # the model calls a tool: never stored
        "My phone number is 555 0100.\n"  # personal data: never asked
        "What are your opening hours?\n"  # a duplicate is asked once
    )
    agent_file = builtin_example("openai-receptionist.yaml")
    args = shared(redis_server_url)
    result = runner.invoke(
        app, ["cache", "warm", "--agent-file", str(agent_file), "--lines", str(lines), *args]
    )
    assert result.exit_code == 0, result.output
    assert "asked 4, stored 2, already cached 0" in result.output
    assert "not stored (personal_data): 1" in result.output
    assert "not stored (not_eligible): 1" in result.output

    again = runner.invoke(
        app, ["cache", "warm", "--agent-file", str(agent_file), "--lines", str(lines), *args]
    )
    assert "stored 0, already cached 2" in again.output

    stats = runner.invoke(app, ["cache", "stats", *args])
    assert stats.exit_code == 0, stats.output
    assert "2 entries" in stats.output

    cleared = runner.invoke(app, ["cache", "clear", *args])
    assert cleared.exit_code == 0, cleared.output
    after = runner.invoke(app, ["cache", "stats", *args])
    assert "0 entries" in after.output


def test_memory_cache_cannot_be_reached_from_outside_the_server() -> None:
    result = runner.invoke(app, ["cache", "stats", "--profile", "single"])
    assert result.exit_code == 2
    assert "lives inside the server process" in result.output


def test_distributed_profile_without_redis_url_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SWITCHBOARD_REDIS_URL", raising=False)
    result = runner.invoke(app, ["cache", "stats", "--profile", "distributed"])
    assert result.exit_code != 0
    assert "redis_url" in result.output
