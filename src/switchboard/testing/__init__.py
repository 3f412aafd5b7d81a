"""Test agents with pytest: ``switchboard.testing``.

Installed with switchboard and registered as a pytest plugin (entry point ``pytest11``),
so in any project that has switchboard and pytest-asyncio these fixtures are there:

* ``agent_call``: ``await agent_call("agent.yaml", dynamic_variables={...})`` starts a
  call in-process, without sockets, and returns an ``AgentCall`` (``say``, ``remind``,
  ``interrupt``, ``state``); every call is hung up after the test.
* ``fake_openai``: a fake OpenAI-compatible server (``OPENAI_BASE_URL`` and
  ``OPENAI_API_KEY`` point at it for the test) for agents that call an LLM.

Scenario files (``examples/scenarios/``) run as pytest items when their directory is
named in the ``switchboard_scenarios`` ini option. See ``docs/testing-agents.md``.
"""

from switchboard.testing.agent_call import AgentCall, CallOver, Reply, start_call

__all__ = ["AgentCall", "CallOver", "Reply", "start_call"]
