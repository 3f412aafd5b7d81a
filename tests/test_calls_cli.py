"""``switchboard calls`` and ``serve --profile distributed`` as a user types them."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import msgspec
import pytest
from typer.testing import CliRunner

from switchboard.cli import app
from tests.fixtures.agents import EchoAgent
from tests.fixtures.distributed import begin, node
from tests.fixtures.ports import free_port
from tests.fixtures.server import retell

pytestmark = pytest.mark.integration

runner = CliRunner()


async def invoke(*args: str) -> tuple[int, str]:
    # The CLI runs its own event loop; give it a thread so the test's loop serves the node.
    result = await asyncio.to_thread(runner.invoke, app, list(args))
    return result.exit_code, result.output


async def test_calls_list_say_and_errors(redis_server_url: str, redis_namespace: str) -> None:
    target = ["--redis-url", redis_server_url, "--namespace", redis_namespace]
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "node-a") as a,
        retell(a.ws_url, "cli-call") as peer,
    ):
        await begin(peer)
        code, out = await invoke("calls", "list", "--json", *target)
        assert code == 0, out
        listed = msgspec.json.decode(out)
        assert [(c["call_id"], c["owner"]) for c in listed["calls"]] == [("cli-call", "node-a")]
        assert [n["node_id"] for n in listed["nodes"]] == ["node-a"]

        code, out = await invoke("calls", "say", "cli-call", "Hold on, please.", *target)
        assert code == 0, out
        assert "node-a" in out
        frame = await peer.recv()
        assert (frame["response_type"], frame["content"]) == ("agent_interrupt", "Hold on, please.")

        code, out = await invoke("calls", "end", "missing-call", *target)
        assert code == 1
        assert out.strip() == "calls: call missing-call is not live on any node"


async def test_calls_without_a_reachable_redis_is_one_line_and_exit_2() -> None:
    code, out = await invoke("calls", "list", "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert code == 2
    assert out.count("\n") == 1
    assert "unreachable" in out


def test_serve_refuses_to_start_without_a_reachable_redis() -> None:
    argv = [sys.executable, "-c", "from switchboard.cli import main; main()", "serve"]
    argv += ["--profile", "distributed", "--port", str(free_port())]
    argv += ["--redis-url", f"redis://127.0.0.1:{free_port()}/0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("serve: Redis at redis://127.0.0.1:")
    assert "unreachable" in lines[0]
