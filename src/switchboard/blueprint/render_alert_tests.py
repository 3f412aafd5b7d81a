"""``promtool test rules`` cases for the alert rules: each alert fires on series made to
trip it, and none fires on a healthy node. ``blueprint`` writes them beside the rules, and
the suite runs promtool on both."""

from __future__ import annotations

from typing import Any

from switchboard.blueprint.model import Deployment
from switchboard.blueprint.render_alerts import (
    ALERTS_FILE,
    CONSUMER_LAG,
    JOB,
    LATENCY_BUCKETS,
    OUTBOX_BACKLOG,
    alert_rules,
)


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ",".join(
        f'{k}="{v}"' for k, v in {"job": JOB, "instance": "node-1:8080", **labels}.items()
    )
    return {"series": f"{name}{{{inner}}}", "values": values}


def _latency_series(slow: bool, budget_s: float) -> list[dict[str, str]]:
    """Response-turn buckets: all under the budget, or all in the bucket past it."""
    bounds = [b for b in LATENCY_BUCKETS if b < budget_s]
    fast_le = bounds[-1] if bounds else LATENCY_BUCKETS[0]
    above = [b for b in LATENCY_BUCKETS if b > budget_s]
    slow_from = above[1] if len(above) > 1 else float("inf")
    limit = slow_from if slow else fast_le
    out = []
    for le in (*LATENCY_BUCKETS, float("inf")):
        filled = le >= limit
        label = "+Inf" if le == float("inf") else f"{le:g}"
        out.append(
            _series(
                "switchboard_first_chunk_seconds_bucket",
                "0+10x20" if filled else "0x20",
                kind="response",
                le=label,
            )
        )
    return out


def alert_tests(d: Deployment) -> dict[str, Any]:
    """Each alert fires on the series made to trip it, and none fires on a healthy node."""
    budget_s = d.budget_ms / 1000.0
    healthy: list[dict[str, str]] = [
        *_latency_series(False, budget_s),
        _series("switchboard_turn_seconds_count", "0+100x20", kind="response"),
        _series("switchboard_fallbacks_total", "0x20", reason="timeout"),
        _series("switchboard_handshakes_rejected_total", "0x20", reason="at_capacity"),
        _series("up", "1x20"),
    ]
    if d.shared_state:
        healthy += [
            _series("switchboard_redis_up", "1x20"),
            _series("switchboard_redis_errors_total", "0x20"),
        ]
    if d.bus is not None:
        healthy += [
            _series("switchboard_outbox_depth", "0x20"),
            _series("switchboard_outbox_spilling", "0x20"),
            _series("switchboard_service_bus_lag", "0x20", group="archive"),
            _series("switchboard_service_dead_letters_parked_total", "0x20", group="archive"),
            _series("switchboard_service_bus_gap_entries_total", "0x20", group="archive"),
        ]
    tests: list[dict[str, Any]] = [
        {
            "interval": "1m",
            "input_series": healthy,
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": a["alert"], "exp_alerts": []}
                for a in alert_rules(d)["groups"][0]["rules"]
            ],
        }
    ]

    def firing(
        name: str, series: list[dict[str, str]], labels: dict[str, str] | None = None
    ) -> None:
        tests.append(
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": name,
                        "exp_alerts": [
                            {
                                "exp_labels": labels
                                or {"severity": _rule(d, name)["labels"]["severity"]},
                                "exp_annotations": {
                                    k: v.replace("{{ $labels.instance }}", "node-1:8080")
                                    for k, v in _rule(d, name)["annotations"].items()
                                },
                            }
                        ],
                    }
                ],
            }
        )

    if any(b > budget_s for b in LATENCY_BUCKETS):
        firing("SwitchboardTTFBOverBudget", _latency_series(True, budget_s))
    firing(
        "SwitchboardFallbackRate",
        [
            _series("switchboard_turn_seconds_count", "0+100x20", kind="response"),
            _series("switchboard_fallbacks_total", "0+5x20", reason="timeout"),
        ],
    )
    firing(
        "SwitchboardCallsRefusedAtCapacity",
        [_series("switchboard_handshakes_rejected_total", "0+3x20", reason="at_capacity")],
    )
    instance = {"job": JOB, "instance": "node-1:8080"}
    if d.shared_state:
        firing(
            "SwitchboardRedisDown",
            [_series("switchboard_redis_up", "1 1 1 0x17")],
            {"severity": "page", **instance},
        )
        firing("SwitchboardStoreErrors", [_series("switchboard_redis_errors_total", "0+4x20")])
    if d.bus is not None:
        firing(
            "SwitchboardBusBacklog", [_series("switchboard_outbox_depth", f"0+{OUTBOX_BACKLOG}x20")]
        )
        node = {"severity": "page", "instance": "node-1:8080"}
        firing(
            "SwitchboardEventsLost",
            [_series("switchboard_outbox_dropped_total", "0x10 3x10", reason="spill_full")],
            node,
        )
        firing(
            "SwitchboardEventsLost",
            [_series("switchboard_outbox_spill_corrupt_total", "0x10 1x10")],
            node,
        )
        firing(  # the first drop of a reason: its series appears with that count
            "SwitchboardEventsLost",
            [_series("switchboard_outbox_dropped_total", "_x5 1x15", reason="unencodable")],
            node,
        )
        firing(
            "SwitchboardEventsParked",
            [_series("switchboard_outbox_parked_total", "0x10 1x10", reason="too_large")],
            {**node, "severity": "warning"},
        )
        by_group = {"group": "archive"}

        def group_alert(name: str, series: dict[str, str]) -> None:
            rule = _rule(d, name)
            tests.append(
                {
                    "interval": "1m",
                    "input_series": [series],
                    "alert_rule_test": [
                        {
                            "eval_time": "15m",
                            "alertname": name,
                            "exp_alerts": [
                                {
                                    "exp_labels": {**rule["labels"], **by_group},
                                    "exp_annotations": {
                                        k: v.replace("{{ $labels.group }}", "archive")
                                        for k, v in rule["annotations"].items()
                                    },
                                }
                            ],
                        }
                    ],
                }
            )

        group_alert(
            "SwitchboardConsumerLag",
            _series("switchboard_service_bus_lag", f"0+{CONSUMER_LAG // 4}x20", **by_group),
        )
        group_alert(
            "SwitchboardDeadLetters",
            _series("switchboard_service_dead_letters_parked_total", "0x10 1x10", **by_group),
        )
        group_alert(  # the first letter of a new reason: its series appears with that count
            "SwitchboardDeadLetters",
            _series(
                "switchboard_service_dead_letters_parked_total",
                "_x5 1x15",
                reason="undecodable",
                **by_group,
            ),
        )
        group_alert(
            "SwitchboardBusGap",
            _series("switchboard_service_bus_gap_entries_total", "0x10 5x10", **by_group),
        )
    firing("SwitchboardNodeDown", [_series("up", "1 1 0x18")], {"severity": "warning", **instance})
    return {"rule_files": [ALERTS_FILE], "evaluation_interval": "1m", "tests": tests}


def _rule(d: Deployment, name: str) -> dict[str, Any]:
    rules: list[dict[str, Any]] = alert_rules(d)["groups"][0]["rules"]
    for rule in rules:
        if rule["alert"] == name:
            return rule
    raise KeyError(name)
