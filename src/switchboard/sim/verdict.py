"""Whether a simulator run passed: one pure rule for the CLI, ``make demo`` and ``make bench``.

A run **fails** on any of:

- a protocol violation by the server (any kind, any count);
- a failed call (any Retell disconnection reason);
- a failed scenario;
- a latency over budget: for each of the ``response`` and ``barge_in`` turn kinds, the
  TTFB p99 (request sent -> first frame for that id) must be at most ``budget_ms``.
  Greetings (connection set-up) and reminders (nudges after silence) are not judged;
- no judged turns at all: a run that measured nothing proves nothing.

Checking each kind's p99 on its own is at least as strict as the p99 of both kinds merged
(the merged p99 never exceeds the larger of the two), so the rule needs no raw samples.

When a node was killed on purpose (``report.failover``), the run also fails unless the
kill cut at least one call off and every call it cut off was resumed: a turn answered on
a new socket whose begin message was empty (repeated greetings are violations anyway).

A run also gets **warnings**, which never fail it but say the numbers may be the
simulator's fault rather than the server's: a simulator process near 100% of a core, or
an event-loop lag p99 over 50 ms, delays its own timestamps and inflates the latencies.
"""

from __future__ import annotations

import msgspec

from switchboard.sim.results import FailoverSummary, RunReport

#: Turn kinds whose TTFB p99 is held to the budget.
JUDGED_KINDS = ("response", "barge_in")
#: Simulator CPU (percent of one core) from which its timings are suspect.
SATURATED_CPU_PERCENT = 90.0
#: Simulator event-loop lag p99 (ms) from which its timings are suspect.
SATURATED_LOOP_LAG_MS = 50.0

BUDGET_RULE = (
    "TTFB p99 of each of the response and barge-in turn kinds must be within the budget "
    "(greetings and reminders are not judged)"
)


def judge(report: RunReport) -> RunReport:
    """A copy of ``report`` with ``passed``, ``verdict_reasons`` and ``verdict_warnings`` set.

    Pure, so a stored JSON report can be re-judged (e.g. against another budget with
    ``msgspec.structs.replace(report, budget_ms=...)``) without re-running anything.
    """
    reasons = _failures(report)
    return msgspec.structs.replace(
        report,
        passed=not reasons,
        verdict_reasons=reasons,
        verdict_warnings=_warnings(report),
    )


def _failures(report: RunReport) -> list[str]:
    reasons: list[str] = []
    total_violations = sum(report.violations.values())
    if total_violations:
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(report.violations.items()) if n)
        reasons.append(f"{_plural(total_violations, 'protocol violation')} ({kinds}).")
    failed_calls = sum(report.calls_failed.values())
    if failed_calls:
        by_reason = ", ".join(f"{k} x{n}" for k, n in sorted(report.calls_failed.items()) if n)
        reasons.append(
            f"{_plural(failed_calls, 'call')} of {report.calls_started} failed ({by_reason})."
        )
    failed_scenarios = [s.name for s in report.scenarios if not s.passed]
    if failed_scenarios:
        reasons.append(
            f"{_plural(len(failed_scenarios), 'scenario')} of {len(report.scenarios)} "
            f"failed: {', '.join(failed_scenarios)}."
        )
    judged = [k for k in report.per_kind if k.kind in JUDGED_KINDS and k.ttfb.count > 0]
    for stats in judged:
        if stats.ttfb.p99_ms > report.budget_ms:
            reasons.append(
                f"{stats.kind} TTFB p99 is {stats.ttfb.p99_ms:.1f} ms, over the "
                f"{report.budget_ms:g} ms budget."
            )
    if not judged:
        reasons.append("No response or barge-in turns were measured: nothing to judge.")
    if report.failover is not None:
        reasons += _failover_failures(report.failover)
    return reasons


def _failover_failures(failover: FailoverSummary) -> list[str]:
    reasons: list[str] = []
    if failover.calls_on_killed_node == 0 or failover.calls_lost_socket == 0:
        reasons.append(f"The kill of {failover.killed_node} cut no call off: nothing failed over.")
    unresumed = failover.calls_lost_socket - failover.calls_resumed
    if unresumed > 0:
        reasons.append(
            f"{_plural(unresumed, 'call')} of {failover.calls_lost_socket} cut off by the kill "
            "not resumed (no turn answered on a new socket, or greeted again)."
        )
    return reasons


def _warnings(report: RunReport) -> list[str]:
    warnings: list[str] = []
    if report.client.cpu_percent >= SATURATED_CPU_PERCENT:
        warnings.append(
            f"The simulator used {report.client.cpu_percent:.0f}% of a core: it may be "
            "the bottleneck, and its latencies may be inflated."
        )
    lag = report.client.loop_lag
    if lag is not None and lag.p99_ms > SATURATED_LOOP_LAG_MS:
        warnings.append(
            f"The simulator's event-loop lag p99 was {lag.p99_ms:.1f} ms (over "
            f"{SATURATED_LOOP_LAG_MS:g} ms): its latencies may be inflated."
        )
    unaccounted = report.calls_started - report.calls_completed - sum(report.calls_failed.values())
    if unaccounted > 0:
        warnings.append(f"{_plural(unaccounted, 'call')} neither completed nor failed.")
    return warnings


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
