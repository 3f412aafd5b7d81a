"""The agent shown in the README runs as shown."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.server import retell, spoken

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_agent() -> Any:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert block is not None, "README lost its agent example"
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    return namespace["FrontDesk"]()


async def test_readme_agent_greets_answers_transfers_and_hangs_up(serve: Any) -> None:
    async with serve(readme_agent()) as srv, retell(srv.ws_url, "readme") as peer:
        await peer.recv()  # config
        await peer.send(
            interaction_type="call_details",
            call={"call_id": "readme", "retell_llm_dynamic_variables": {"name": "Ada"}},
        )
        # The README agent does not ask for call details, so the greeting may precede them.
        assert spoken(await peer.complete(0), 0) in {
            "Hi Ada, how can I help?",
            "Hi there, how can I help?",
        }
        await peer.request(1, "when are you open")
        assert "nine to five" in spoken(await peer.complete(1), 1)
        await peer.request(2, "a human please")
        assert (await peer.complete(2))[-1]["transfer_number"] == "+14155550100"
        await peer.request(3, "bye")
        assert (await peer.complete(3))[-1]["end_call"] is True
