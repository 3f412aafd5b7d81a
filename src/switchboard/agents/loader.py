"""Load the agent named by an agent file (YAML or TOML).

The top-level ``agent`` key picks the implementation: ``scripted`` (the default) or
``openai``. Each implementation validates the rest of the file itself
(``agent_file.AgentFileError`` names the field). Implementations are imported only when
chosen, so a scripted deployment never imports the LLM client.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from switchboard.agents.agent_file import AgentFileError, read_agent_file
from switchboard.agents.base import Agent

AGENT_KINDS = ("scripted", "openai")


def load_agent(path: Path) -> Agent:
    """Build the agent an agent file describes."""
    spec = read_agent_file(path)
    spec.pop("cache", None)  # the response cache's section: switchboard.cache.policy
    kind = spec.get("agent", "scripted")
    if kind == "scripted":
        from switchboard.agents.scripted import ScriptedAgent

        return ScriptedAgent.from_spec(spec, path)
    if kind == "openai":
        # Imported by name: the LLM client is loaded only by deployments that use it.
        module = importlib.import_module("switchboard.agents.openai_agent")
        agent: Agent = module.OpenAIAgent.from_spec(spec, path)
        return agent
    raise AgentFileError(path, "agent", f"unknown agent {kind!r}; expected one of {AGENT_KINDS}")
