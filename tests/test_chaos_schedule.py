"""The fault schedule: parsed from a spec, seeded, repeatable, and refused when the
cluster has nothing to aim a fault at."""

from __future__ import annotations

import pytest

from switchboard.chaos.schedule import (
    EVENT_DRIVEN_ONLY,
    EVENT_PIPELINE,
    FAULT_KINDS,
    ScheduleError,
    default_spec,
    parse_spec,
    plan_schedule,
)

NODES = ["node-1", "node-2", "node-3"]


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    requests = parse_spec("kill,kill-mid-turn,term,redis-restart,redis-pause:2,hangup:4")
    one = plan_schedule(requests, seed=7, duration_s=60, nodes=NODES)
    assert one == plan_schedule(requests, seed=7, duration_s=60, nodes=NODES)
    assert one != plan_schedule(requests, seed=8, duration_s=60, nodes=NODES)


def test_faults_land_inside_the_run_in_order_with_their_parameters() -> None:
    schedule = plan_schedule(
        parse_spec("redis-pause:2.5,hangup,kill"), seed=1, duration_s=100, nodes=NODES
    )
    times = [f.at_s for f in schedule]
    assert times == sorted(times)
    assert all(10 <= t <= 80 for t in times)
    by_kind = {f.kind: f for f in schedule}
    assert by_kind["redis-pause"].param == 2.5
    assert by_kind["hangup"].param == 3.0  # the default
    assert by_kind["kill"].target in NODES
    assert by_kind["redis-pause"].target == "redis"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("explode", "unknown fault 'explode'"),
        ("kill:3", "takes no parameter"),
        ("redis-pause:soon", "is not a number"),
        ("redis-pause:0", "must be in (0, 3600]"),
        (" , ", "names no fault"),
    ],
)
def test_a_bad_spec_is_refused_with_its_reason(spec: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(spec)


def test_faults_without_a_target_in_this_cluster_are_refused() -> None:
    with pytest.raises(ScheduleError, match="own Redis"):
        plan_schedule(
            parse_spec("redis-restart"), seed=1, duration_s=10, nodes=NODES, has_redis=False
        )
    with pytest.raises(ScheduleError, match="own broker"):
        plan_schedule(parse_spec("bus-stop"), seed=1, duration_s=10, nodes=NODES)
    with pytest.raises(ScheduleError, match="services"):
        plan_schedule(parse_spec("service-kill"), seed=1, duration_s=10, nodes=NODES)


def test_a_service_kill_never_aims_at_the_broker() -> None:
    services = ["archive", "analytics", "escalation", "tansu"]
    targets = {
        plan_schedule(
            parse_spec("service-kill"), seed=s, duration_s=10, nodes=NODES, services=services
        )[0].target
        for s in range(30)
    }
    assert targets == {"archive", "analytics", "escalation"}


def test_the_default_spec_has_one_fault_of_each_kind_that_applies() -> None:
    distributed = parse_spec(default_spec("distributed", bus_is_broker=False))
    assert {r.kind for r in distributed} == set(FAULT_KINDS) - EVENT_DRIVEN_ONLY
    event = parse_spec(default_spec("event-driven", bus_is_broker=True))
    assert {r.kind for r in event} == set(FAULT_KINDS) - EVENT_PIPELINE
    streams = parse_spec(default_spec("event-driven", bus_is_broker=False))
    assert "bus-stop" not in {r.kind for r in streams}


def test_the_event_pipeline_faults_aim_at_their_parts_and_need_an_event_driven_cluster() -> None:
    services = ["archive", "analytics", "escalation", "tansu"]
    spec = parse_spec("archive-stop,poison,oversized,kill-while-spilling:4")
    schedule = plan_schedule(
        spec, seed=5, duration_s=40, nodes=NODES, services=services, has_broker=True
    )
    by_kind = {f.kind: f for f in schedule}
    assert by_kind["archive-stop"].target == "archive"
    assert by_kind["archive-stop"].param == 5.0
    assert by_kind["poison"].target == "bus"
    assert by_kind["oversized"].target == "calls"
    assert by_kind["kill-while-spilling"].target in NODES
    assert by_kind["kill-while-spilling"].param == 4.0
    # --bus redis: the cluster's own valkey-server is the bus that can be stopped
    on_streams = plan_schedule(
        parse_spec("bus-stop,kill-while-spilling"),
        seed=5,
        duration_s=40,
        nodes=NODES,
        services=services[:3],
        has_bus=True,
    )
    assert {f.kind for f in on_streams} == {"bus-stop", "kill-while-spilling"}
    with pytest.raises(ScheduleError, match="services"):
        plan_schedule(parse_spec("poison"), seed=1, duration_s=10, nodes=NODES)
    with pytest.raises(ScheduleError, match="can stop"):
        plan_schedule(
            parse_spec("kill-while-spilling"),
            seed=1,
            duration_s=10,
            nodes=NODES,
            services=services[:3],
        )
