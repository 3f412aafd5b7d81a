"""Prometheus: the scrape config, the alert rules, and ``promtool test rules`` cases for them.

Every expression uses a metric the node exports (``server/metrics.py``):
``switchboard_first_chunk_seconds`` (histogram, by ``kind``), ``switchboard_turn_seconds``,
``switchboard_fallbacks_total``, ``switchboard_handshakes_rejected_total{reason}``,
``switchboard_redis_up`` and ``switchboard_redis_errors_total``. The bus backlog alert
(event-driven only) reads the outbox gauges ``switchboard_outbox_depth`` and
``switchboard_outbox_spilling`` that the event-driven profile exports, and the loss
alerts its counters ``switchboard_outbox_dropped_total``,
``switchboard_outbox_spill_corrupt_total`` and ``switchboard_outbox_parked_total``; the consumer
alerts read what every service's consume loop exports (``services/service_metrics.py``):
``switchboard_service_bus_lag{group}``, ``switchboard_service_dead_letters_parked_total``
and ``switchboard_service_bus_gap_entries_total``.
"""

from __future__ import annotations

from typing import Any

import yaml

from switchboard.blueprint.model import Deployment

SCRAPE_FILE = "prometheus.yml"
SCRAPE_K8S_FILE = "prometheus-kubernetes.yml"
ALERTS_FILE = "alerts.yml"
ALERTS_TEST_FILE = "alerts.test.yml"
JOB = "switchboard"
SERVICES_JOB = "switchboard-services"
#: The analytics service's default port (dashboard and /metrics).
ANALYTICS_PORT = 8090
#: Where archive and escalation serve ``/metrics`` in the generated deployments.
SERVICE_METRICS_PORT = 9464
#: The node's histogram buckets (seconds), as ``server/metrics.py`` declares them.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FALLBACK_RATE = 0.01
OUTBOX_BACKLOG = 1000
#: Unread entries (Redis) or messages (Kafka) of one consumer group worth a warning: a
#: service that lags this far for 10 minutes is down or too slow, and on Redis Streams its
#: backlog holds the stream past ``bus_max_len``.
CONSUMER_LAG = 10_000


def scrape_config(d: Deployment) -> dict[str, Any]:
    targets = [f"{n}:{d.port}" for n in d.node_ids]
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [ALERTS_FILE],
        "scrape_configs": [
            {"job_name": JOB, "metrics_path": "/metrics", "static_configs": [{"targets": targets}]},
            *service_jobs(d),
        ],
    }


def service_jobs(d: Deployment) -> list[dict[str, Any]]:
    """The event-driven services' ``/metrics`` (compose): group lag, dead letters, gaps."""
    if d.bus is None:
        return []
    targets = [
        f"archive:{SERVICE_METRICS_PORT}",
        f"escalation:{SERVICE_METRICS_PORT}",
        f"analytics:{ANALYTICS_PORT}",
    ]
    return [
        {
            "job_name": SERVICES_JOB,
            "metrics_path": "/metrics",
            "static_configs": [{"targets": targets}],
        }
    ]


def scrape_config_kubernetes(d: Deployment) -> dict[str, Any]:
    """Pods found through the API: the node pods (job ``switchboard``) and, event-driven,
    the services' pods (job ``switchboard-services``). Every target carries ``namespace``
    and ``pod``: the Prometheus Adapter maps a series to its pod through exactly those two
    labels, so without them the HPA never gets its metric."""
    jobs = [_kubernetes_job(d, JOB, component="node", port_name="http")]
    if d.bus is not None:
        jobs.append(
            _kubernetes_job(
                d, SERVICES_JOB, component="|".join(d.services), port_name="metrics|http"
            )
        )
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [ALERTS_FILE],
        "scrape_configs": jobs,
    }


def _kubernetes_job(d: Deployment, job: str, *, component: str, port_name: str) -> dict[str, Any]:
    meta = "__meta_kubernetes_pod_"
    return {
        "job_name": job,
        "metrics_path": "/metrics",
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [d.namespace]}}],
        "relabel_configs": [
            {
                "source_labels": [f"{meta}label_app_kubernetes_io_name"],
                "regex": d.name,
                "action": "keep",
            },
            {
                "source_labels": [f"{meta}label_app_kubernetes_io_component"],
                "regex": component,
                "action": "keep",
            },
            {
                "source_labels": [f"{meta}container_port_name"],
                "regex": port_name,
                "action": "keep",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": [f"{meta}name"], "target_label": "pod"},
        ],
    }


def alert_rules(d: Deployment) -> dict[str, Any]:
    budget_s = d.budget_ms / 1000.0
    p99 = (
        "histogram_quantile(0.99, sum by (le) "
        '(rate(switchboard_first_chunk_seconds_bucket{kind="response"}[5m])))'
    )
    rules: list[dict[str, Any]] = [
        {
            "alert": "SwitchboardTTFBOverBudget",
            "expr": f"{p99} > {budget_s:g}",
            "for": "5m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": f"TTFB p99 of response turns is over the {d.budget_ms:g} ms budget",
                "description": "Callers wait too long for the first words of a reply.",
            },
        },
        {
            "alert": "SwitchboardFallbackRate",
            "expr": (
                "sum(rate(switchboard_fallbacks_total[5m])) / "
                f"sum(rate(switchboard_turn_seconds_count[5m])) > {FALLBACK_RATE:g}"
            ),
            "for": "5m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": f"over {FALLBACK_RATE:.0%} of turns end in the spoken fallback",
                "description": "The agent or its LLM fails or is too slow: callers hear apologies.",
            },
        },
        {
            "alert": "SwitchboardCallsRefusedAtCapacity",
            "expr": (
                'sum(rate(switchboard_handshakes_rejected_total{reason="at_capacity"}[5m])) > 0'
            ),
            "for": "2m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": f"nodes refuse calls at their {d.max_calls}-call cap",
                "description": "Add nodes (or let the autoscaler): the fleet is full.",
            },
        },
    ]
    if d.shared_state:
        rules += [
            {
                "alert": "SwitchboardRedisDown",
                "expr": "switchboard_redis_up == 0",
                "for": "30s",
                "labels": {"severity": "page"},
                "annotations": {
                    "summary": "{{ $labels.instance }} cannot reach Redis",
                    "description": "Calls go on; their state is saved when Redis is back.",
                },
            },
            {
                "alert": "SwitchboardStoreErrors",
                "expr": "sum(rate(switchboard_redis_errors_total[5m])) > 0",
                "for": "5m",
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": "Redis commands fail on the link",
                    "description": "Call state saves are failing or late.",
                },
            },
        ]
    if d.bus is not None:
        rules.append(
            {
                "alert": "SwitchboardBusBacklog",
                "expr": (
                    f"max(switchboard_outbox_depth) > {OUTBOX_BACKLOG} "
                    "or max(switchboard_outbox_spilling) == 1"
                ),
                "for": "2m",
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": "call events back up in the outbox (bus down or behind)",
                    "description": "Nothing is lost (the outbox spills to disk), but services lag.",
                },
            }
        )
        rules += outbox_loss_rules()
        rules += consumer_rules()
    rules.append(
        {
            "alert": "SwitchboardNodeDown",
            "expr": f'up{{job="{JOB}"}} == 0',
            "for": "1m",
            "labels": {"severity": "warning"},
            "annotations": {"summary": "{{ $labels.instance }} does not answer /metrics"},
        }
    )
    return {"groups": [{"name": "switchboard", "rules": rules}]}


def _new_or_increased(counter: str, window: str = "15m", by: str = "instance") -> str:
    """Per ``by``, what ``counter`` gained in ``window``. A labelled counter has no
    series until its first increment, so ``increase`` alone never sees that one: a
    series that did not exist ``window`` ago counts with its whole value."""
    return (
        f"sum by ({by}) (({counter} unless {counter} offset {window})"
        f" or increase({counter}[{window}]))"
    )


def outbox_loss_rules() -> list[dict[str, Any]]:
    """The node's side: events its outbox could not keep (dropped, or a damaged spill
    record skipped on replay), and events the bus will never take (parked)."""
    return [
        {
            "alert": "SwitchboardEventsLost",
            "expr": (
                f"{_new_or_increased('switchboard_outbox_dropped_total')} > 0 or "
                f"{_new_or_increased('switchboard_outbox_spill_corrupt_total')} > 0"
            ),
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "{{ $labels.instance }} lost call events in its outbox",
                "description": (
                    "Dropped (spill file full, disk full, unencodable) or skipped as damaged "
                    "spill records: those turns never reach the archive or the services."
                ),
            },
        },
        {
            "alert": "SwitchboardEventsParked",
            "expr": f"{_new_or_increased('switchboard_outbox_parked_total')} > 0",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $labels.instance }} parked call events the bus refused",
                "description": (
                    "Kept in outbox.parked beside the spill file (read_parked); re-publish "
                    "them by hand once the cause is fixed."
                ),
            },
        },
    ]


def consumer_rules() -> list[dict[str, Any]]:
    """The services' side of the bus: a lagging group, parked messages, lost entries."""
    return [
        {
            "alert": "SwitchboardConsumerLag",
            "expr": f"max by (group) (switchboard_service_bus_lag) > {CONSUMER_LAG}",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "consumer group {{ $labels.group }} lags behind the bus",
                "description": (
                    "The service is down or too slow. Nothing is trimmed it has not read, so "
                    "the Redis stream grows past bus_max_len until it catches up."
                ),
            },
        },
        {
            "alert": "SwitchboardDeadLetters",
            "expr": (
                f"{_new_or_increased('switchboard_service_dead_letters_parked_total', by='group')}"
                " > 0"
            ),
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $labels.group }} parked messages it cannot process",
                "description": (
                    "See switchboard service deadletters list; replay once the cause is fixed."
                ),
            },
        },
        {
            "alert": "SwitchboardBusGap",
            "expr": (
                f"{_new_or_increased('switchboard_service_bus_gap_entries_total', by='group')} > 0"
            ),
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "{{ $labels.group }} lost bus entries it had not read",
                "description": "Entries were deleted from the stream before the group acked them.",
            },
        },
    ]


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


def _dump(data: dict[str, Any], header: str) -> str:
    return f"# {header}\n" + yaml.safe_dump(data, sort_keys=False, width=100)


def render_prometheus(d: Deployment) -> dict[str, str]:
    """The files under ``prometheus/``."""
    return {
        SCRAPE_FILE: _dump(scrape_config(d), "Prometheus for docker-compose: scrape every node."),
        SCRAPE_K8S_FILE: _dump(
            scrape_config_kubernetes(d),
            "Prometheus in Kubernetes: node pods and services, with namespace and pod.",
        ),
        ALERTS_FILE: _dump(alert_rules(d), f"Alerts for the {d.profile} profile."),
        ALERTS_TEST_FILE: _dump(alert_tests(d), "promtool test rules alerts.test.yml"),
    }
