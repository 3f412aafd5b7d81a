"""From settings and agent files to a cached agent: defaults, backends, errors, warm-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.agents.agent_file import AgentFileError
from switchboard.agents.loader import load_agent
from switchboard.cache.agent import CachedAgent
from switchboard.cache.build import CacheConfigError, with_cache
from switchboard.cache.memory import MemoryResponseCache
from switchboard.cache.redis import RedisResponseCache
from switchboard.cache.warm import start_and_warm
from switchboard.config import Settings, builtin_example
from switchboard.testing.fake_llm import FakeLLMConfig, FakeLLMServer

OPENAI = builtin_example("openai-receptionist.yaml")
SCRIPTED = builtin_example("receptionist.yaml")


def test_scripted_agent_is_not_cached_by_default() -> None:
    agent = load_agent(SCRIPTED)
    assert with_cache(agent, Settings(agent_file=SCRIPTED)) is agent


def test_openai_example_gets_both_tiers_in_memory_on_the_single_profile() -> None:
    wrapped = with_cache(load_agent(OPENAI), Settings(agent_file=OPENAI))
    assert isinstance(wrapped, CachedAgent)
    assert isinstance(wrapped.cache, MemoryResponseCache)
    assert wrapped.policy.exact
    assert wrapped.policy.semantic
    assert wrapped.ttl_s == 3600


def test_shared_profiles_use_redis_and_need_its_url() -> None:
    settings = Settings(agent_file=OPENAI, profile="distributed", redis_url="redis://127.0.0.1:1")
    wrapped = with_cache(load_agent(OPENAI), settings)
    assert isinstance(wrapped, CachedAgent)
    assert isinstance(wrapped.cache, RedisResponseCache)
    with pytest.raises(CacheConfigError, match="redis_url"):
        with_cache(load_agent(OPENAI), Settings(agent_file=OPENAI, profile="event-driven"))


def test_cache_off_in_settings_wins_over_the_agent_file() -> None:
    agent = load_agent(OPENAI)
    assert with_cache(agent, Settings(agent_file=OPENAI, cache="off")) is agent


def test_bad_cache_section_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(OPENAI.read_text() + "  colour: blue\n")
    with pytest.raises(AgentFileError, match=r"cache\.colour: unknown field"):
        with_cache(load_agent(path), Settings(agent_file=path))
    path.write_text(OPENAI.read_text().replace("threshold: 0.85", "threshold: 7"))
    with pytest.raises(AgentFileError, match=r"cache\.threshold"):
        with_cache(load_agent(path), Settings(agent_file=path))


async def test_server_start_warms_the_agent_file_lines(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    fake_llm.config = FakeLLMConfig(reply="We are open from 8 AM to 6 PM.")
    path = tmp_path / "agent.yaml"
    text = OPENAI.read_text().replace(
        "  semantic: true\n",
        "  semantic: false\n  warm:\n    - What are your opening hours?\n"
        "    - Where are you located?\n    - Book me an appointment please\n",
    )
    path.write_text(text)
    wrapped = with_cache(load_agent(path), Settings(agent_file=path))
    assert isinstance(wrapped, CachedAgent)
    start_and_warm(wrapped)
    await wrapped.warmed()
    assert await wrapped.cache.count() == 2  # the booking line used a tool
    await wrapped.aclose()
