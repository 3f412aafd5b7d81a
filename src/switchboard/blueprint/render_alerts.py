"""Prometheus alert rules for a deployment, one group, thresholds from its profile.

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

from switchboard.blueprint.model import Deployment

#: The scrape job of the nodes: the alerts select their series by it.
JOB = "switchboard"
ALERTS_FILE = "alerts.yml"
#: The node's histogram buckets (seconds), as ``server/metrics.py`` declares them.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FALLBACK_RATE = 0.01
OUTBOX_BACKLOG = 1000
#: Unread entries (Redis) or messages (Kafka) of one consumer group worth a warning: a
#: service that lags this far for 10 minutes is down or too slow, and on Redis Streams its
#: backlog holds the stream past ``bus_max_len``.
CONSUMER_LAG = 10_000


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
