"""``switchboard.bench.round_trip`` measures what it says: in ``ping`` mode every wake-up
waits for its own reply from a real Redis, in ``idle`` mode none sends anything."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from switchboard.bench.round_trip import wake

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("mode", "replies_per_wakeup"), [("ping", 1), ("idle", 0)])
async def test_each_wakeup_makes_its_round_trip_or_none(
    redis_server_url: str, mode: str, replies_per_wakeup: int
) -> None:
    port = urlparse(redis_server_url).port
    assert port is not None
    run = await wake(mode, port, rate=400.0, duration_s=0.05)
    assert run.wakeups in (20, 21)  # 0.05 s at 400 a second (the last may round either way)
    assert run.replies == run.wakeups * replies_per_wakeup
