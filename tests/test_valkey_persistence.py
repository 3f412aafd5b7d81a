"""The cluster's valkey keeps call state through a restart, even ``kill -9``.

It used to run without persistence, as SUMMARY.md told users to run Redis: a restart
emptied it, every call in flight lost its fencing epoch and its state, and was greeted
again. Now it writes an append-only file fsynced every second.
"""

from __future__ import annotations

import signal
from pathlib import Path

from switchboard.cluster.processes import free_port
from switchboard.cluster.valkey import redis_url, start_valkey
from switchboard.connections import redis_client
from switchboard.state.redis import RedisCallStore


async def test_call_state_survives_a_kill_9_of_the_clusters_valkey(tmp_path: Path) -> None:
    port = free_port()
    server = start_valkey(log_dir=tmp_path, port=port)
    try:
        client = redis_client(redis_url(server))
        config = await client.config_get("*append*")
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "everysec"
        data_dir = (await client.config_get("dir"))["dir"]
        assert Path(data_dir).is_relative_to(tmp_path)
        store = RedisCallStore(client, namespace="t:")
        state = await store.claim("call-1", "node-1")
        state.greeted = True
        state.turns = 3
        await store.save(state)
        # Until the write is on disk (the file is fsynced every second): then kill -9.
        assert await client.execute_command("WAITAOF", 1, 0, 0) == [1, 0]
        await client.aclose()
        server.send_signal(signal.SIGKILL)
        server.wait(10.0)
    finally:
        server.stop()
    server = start_valkey(log_dir=tmp_path, port=port)
    try:
        store = RedisCallStore(redis_client(redis_url(server)), namespace="t:")
        stored = await store.load("call-1")
        assert stored is not None
        assert (stored.greeted, stored.turns, stored.epoch) == (True, 3, 1)
        await store.client.aclose()
    finally:
        server.stop()


async def test_a_throwaway_server_keeps_nothing(tmp_path: Path) -> None:
    server = start_valkey(log_dir=tmp_path, persistent=False)
    try:
        client = redis_client(redis_url(server))
        assert (await client.config_get("appendonly"))["appendonly"] == "no"
        assert (await client.config_get("save"))["save"] == ""
        await client.aclose()
    finally:
        server.stop()
