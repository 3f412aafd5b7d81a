"""Every Redis client is made by ``switchboard.connections``, so its deadlines, retries and
pool bounds are set in one place (redis-py's defaults turn a dead link into seconds)."""

from __future__ import annotations

import re
from pathlib import Path

import switchboard
from switchboard.connections import blocking_redis_client, redis_client

PACKAGE = Path(switchboard.__file__).parent
#: the ways redis-py makes a client or a pool of its own
MAKERS = re.compile(r"Redis\.from_url|\bRedis\(|ConnectionPool|StrictRedis")


def test_no_module_but_connections_makes_a_redis_client() -> None:
    makers = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "connections.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if MAKERS.search(line)
    ]
    assert makers == []


def test_the_figures_reach_the_pool() -> None:
    client = redis_client(
        "redis://127.0.0.1:1/0",
        timeout_ms=200,
        read_timeout_ms=3000,
        retries=0,
        max_connections=7,
        pool_wait_ms=900,
    )
    pool = client.connection_pool
    assert pool.max_connections == 7
    assert pool.timeout == 0.9  # type: ignore[attr-defined]
    assert pool.connection_kwargs["socket_timeout"] == 3.0
    assert pool.connection_kwargs["socket_connect_timeout"] == 0.2
    assert pool.connection_kwargs["retry"].get_retries() == 0
    blocking = blocking_redis_client("redis://127.0.0.1:1/0", timeout_ms=500)
    kwargs = blocking.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.5
    assert kwargs["retry"].get_retries() == 0
