"""The generator's pure parts: the same seed places the same calls, and the ledger it
gives each call reports requests and completed replies to the nemesis's tripwire."""

from __future__ import annotations

import asyncio

from switchboard.chaos.generator import Generator, TrackedLedger, Tripwire, plan_calls
from switchboard.protocol.outbound import Response
from switchboard.sim.metrics import RunMetrics


def test_the_same_seed_places_the_same_calls_and_another_seed_others() -> None:
    def seen(seed: int) -> list[tuple[object, ...]]:
        """What the agent sees of each call (the telephony sid is unique per call)."""
        return [
            (p.script, {k: v for k, v in p.call.items() if k != "telephony_identifier"})
            for p in plan_calls(seed=seed, calls=5, turns=3)
        ]

    assert seen(4) == seen(4)
    assert seen(4) != seen(5)
    one = plan_calls(seed=4, calls=5, turns=3)
    assert [len(p.script) for p in one] == [3] * 5
    assert all(t.barge_in is None and t.say is not None for p in one for t in p.script)


def test_the_ledger_reports_each_request_and_each_reply_once_with_its_time() -> None:
    seen: list[str] = []
    ledger = TrackedLedger("call", RunMetrics(), 0.025, seen.append)
    ledger.request("response", 1.0)
    ledger.on_response(Response(response_id=1, content="Hi ", content_complete=False), 1.1)
    assert seen == ["request"]
    ledger.on_response(Response(response_id=1, content="there.", content_complete=True), 1.2)
    assert seen == ["request", "reply"]
    assert ledger.answered_at == {1: 1.2}
    assert ledger.requests[0].text == "Hi there."
    # a frame after content_complete is the simulator's violation, not a second reply
    ledger.on_response(Response(response_id=1, content="again", content_complete=True), 1.3)
    assert seen == ["request", "reply"]


def test_a_tripwire_fires_once_on_the_reply_of_a_call_it_wants() -> None:
    async def scenario() -> list[str]:
        generator = Generator(url="ws://127.0.0.1:1/x", seed=1, planned=[], duration_s=None)
        generator._loop = asyncio.get_running_loop()
        fired: list[str] = []
        generator.arm(
            Tripwire(wants=lambda c: c == "b", fire=lambda: fired.append("kill"), on="reply")
        )
        generator._on_ledger("a", "reply")  # not a call it wants
        generator._on_ledger("b", "request")  # not what it waits for
        assert fired == []
        generator._on_ledger("b", "reply")
        generator._on_ledger("b", "reply")  # disarmed after firing
        return fired

    assert asyncio.run(scenario()) == ["kill"]


def test_a_tripwire_on_a_request_fires_after_the_request_is_written() -> None:
    async def scenario() -> list[str]:
        generator = Generator(url="ws://127.0.0.1:1/x", seed=1, planned=[], duration_s=None)
        generator._loop = asyncio.get_running_loop()
        order: list[str] = []
        generator.arm(Tripwire(wants=lambda _: True, fire=lambda: order.append("kill")))
        generator._on_ledger("a", "request")
        order.append("written")  # the rest of the step that made the request
        await asyncio.sleep(0)
        return order

    assert asyncio.run(scenario()) == ["written", "kill"]
