"""The slow-LLM row of ``switchboard validate``: a real ``switchboard serve`` node with the
OpenAI agent, the fake LLM at 800 ms to first token and the memory cache. Cached answers
pass a budget the LLM alone could never keep; a budget nothing meets fails; a node
without a cache is "not applicable" unless the cache is required."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from switchboard.cli import app
from switchboard.cluster.processes import Child, free_port, start_server
from switchboard.config import builtin_example
from switchboard.testing.fake_llm import FakeLLMConfig, FakeLLMServer
from switchboard.validate.cache import FAQ_LINES, NAME, cache_check
from switchboard.validate.report import Check
from switchboard.validate.run import ValidateOptions, validate
from switchboard.validate.target import url_target
from tests.fixtures.agents import EchoAgent
from tests.fixtures.broken_servers import ReferenceServer, threaded_llm_server

pytestmark = pytest.mark.integration

TTFT_MS = 800.0


@pytest.fixture
def cached_node(fake_llm: FakeLLMServer, tmp_path: Path) -> Iterator[Child]:
    fake_llm.config = FakeLLMConfig(ttft_ms=TTFT_MS, reply="We can help with that today.")
    env = {
        "OPENAI_BASE_URL": fake_llm.base_url,
        "OPENAI_API_KEY": "sk-test",
        "SWITCHBOARD_PROFILE": "single",
        "SWITCHBOARD_CACHE": "memory",
        "SWITCHBOARD_LOG_LEVEL": "warning",
    }
    node = start_server(
        port=free_port(),
        agent_file=builtin_example("openai-receptionist.yaml"),
        log_dir=tmp_path,
        env=env,
    )
    try:
        yield node
    finally:
        node.stop()


async def test_cached_answers_keep_a_budget_the_slow_llm_cannot(
    cached_node: Child, fake_llm: FakeLLMServer
) -> None:
    target = url_target(f"ws://127.0.0.1:{cached_node.port}/llm-websocket")
    # 300 ms, the tightest profile's budget: every uncached turn waits 800 ms for the LLM.
    check = await cache_check(target, budget_ms=300, require_cache=False)
    assert isinstance(check, Check)
    assert check.passed, check
    f = check.figures
    assert f["cached turns"] == f["cache hits in /metrics"] == 2 * len(FAQ_LINES)
    assert isinstance(f["cached TTFB max (ms)"], float)
    assert f["cached TTFB max (ms)"] <= 300
    # the LLM was asked once per line only: the second pass came from the cache
    assert fake_llm.stats.requests == len(FAQ_LINES)

    tight = await cache_check(target, budget_ms=0.001, require_cache=False)
    assert isinstance(tight, Check)
    assert not tight.passed
    assert tight.figures["cached turns"] == 2 * len(FAQ_LINES)


async def test_without_a_cache_it_does_not_apply_unless_required(
    serve: Callable[..., Any],
) -> None:
    async with serve(EchoAgent()) as srv:
        target = url_target(srv.ws_url)
        skipped = await cache_check(target, budget_ms=800, require_cache=False)
        required = await cache_check(target, budget_ms=800, require_cache=True)
    assert isinstance(skipped, str)
    assert skipped.startswith("not applicable: cache off")
    assert isinstance(required, Check)
    assert not required.passed
    assert required.figures == {"cache": "off"}


async def test_validate_reports_the_row_and_require_cache_fails_the_run(
    serve: Callable[..., Any],
) -> None:
    async with serve(EchoAgent(), max_calls=4) as srv:
        options = {"calls": 2, "budget_ms": 10_000, "duration_s": 1.0, "turns": 2}
        relaxed = await validate(url_target(srv.ws_url), ValidateOptions("single", **options))
        strict = await validate(
            url_target(srv.ws_url), ValidateOptions("single", require_cache=True, **options)
        )
    assert relaxed.passed
    assert relaxed.not_run[NAME].startswith("not applicable: cache off")
    assert not strict.passed
    assert [c.name for c in strict.checks if not c.passed] == [NAME]


def test_require_cache_on_the_command_line(tmp_path: Path) -> None:
    with threaded_llm_server(ReferenceServer()) as url:
        args = ["validate", "--profile", "single", "--url", url, "--calls", "1"]
        args += ["--capacity", "1", "--duration", "1", "--budget-ms", "10000"]
        result = CliRunner().invoke(
            app, [*args, "--require-cache", "--report", str(tmp_path / "v.html")]
        )
    assert result.exit_code == 1, result.output
    assert f"FAIL  {NAME}" in result.stdout
