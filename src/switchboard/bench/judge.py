"""Which targets a case missed. Relative targets compare with another case of the same run
(turns per core against the single profile, TTFB p99 against the node without HAProxy),
so a slower machine does not make them meaningless. Pure: no process, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from switchboard.bench.cases import BenchCase
from switchboard.sim.results import RunReport
from switchboard.sim.verdict import JUDGED_KINDS


def cache_targets_missed(case: BenchCase, cache: dict[str, float]) -> list[str]:
    if case.max_cached_ttfb_p99_ms is None:
        return []
    bound = cache.get("hit_first_chunk_p99_le_ms:exact")
    if bound is not None and 0 <= bound <= case.max_cached_ttfb_p99_ms:
        return []
    shown = "no exact hits" if bound is None else bound_text(bound)
    return [f"cached TTFB p99 {shown} > target {case.max_cached_ttfb_p99_ms:g} ms"]


def missed_targets(
    case: BenchCase, report: RunReport, others: Mapping[str, RunReport] | None = None
) -> list[str]:
    """The targets ``case`` missed; relative ones compare with ``others`` (the same run's
    reports by case name) and count as missed when their reference did not run."""
    missed = []
    others = others or {}
    if case.min_turns_per_core_vs is not None:
        name, share = case.min_turns_per_core_vs
        ratio = turns_per_core_ratio(report, others.get(name))
        if ratio is None or ratio < share:
            shown = "unknown" if ratio is None else f"{ratio:.0%}"
            missed.append(f"turns/s per core {shown} of {name}'s < target {share:.0%}")
    if case.max_ttfb_p99_delta_vs is not None:
        name, delta_ms = case.max_ttfb_p99_delta_vs
        delta = ttfb_p99_delta(report, others.get(name))
        if delta is None or delta > delta_ms:
            shown = "unknown" if delta is None else f"{delta:+.2f} ms"
            missed.append(f"TTFB p99 {shown} over {name}'s > target +{delta_ms:g} ms")
    if case.max_failover_p99_ms is not None:
        f = report.failover
        p99 = f.kill_to_answer.p99_ms if f is not None and f.kill_to_answer.count else None
        if p99 is None or p99 > case.max_failover_p99_ms:
            shown = "unknown" if p99 is None else f"{p99:.0f} ms"
            missed.append(
                f"kill -> first answered turn p99 {shown} > target {case.max_failover_p99_ms:g} ms"
            )
    if case.max_pong_rtt_p99_ms is not None:
        pong = report.pong_rtt
        if not pong.count or pong.p99_ms > case.max_pong_rtt_p99_ms:
            shown = f"{pong.p99_ms:.1f} ms" if pong.count else "unknown"
            missed.append(f"pong RTT p99 {shown} > target {case.max_pong_rtt_p99_ms:g} ms")
    if case.max_failed_calls is not None:
        failed = sum(report.calls_failed.values())
        if failed > case.max_failed_calls:
            missed.append(f"{failed} failed calls > target {case.max_failed_calls}")
    if case.min_turns_per_core_s is not None:
        got = report.turns_per_core_s
        if got is None or got < case.min_turns_per_core_s:
            shown = "unknown" if got is None else f"{got:.0f}"
            missed.append(f"turns/s per core {shown} < target {case.min_turns_per_core_s:g}")
    if case.max_ttfb_p99_ms is not None:
        worst = _worst_judged_p99(report)
        if worst is None or worst > case.max_ttfb_p99_ms:
            shown = "unknown" if worst is None else f"{worst:.1f} ms"
            missed.append(f"TTFB p99 {shown} > target {case.max_ttfb_p99_ms:g} ms")
    return missed


def turns_per_core_ratio(report: RunReport, reference: RunReport | None) -> float | None:
    if reference is None or not reference.turns_per_core_s or report.turns_per_core_s is None:
        return None
    return report.turns_per_core_s / reference.turns_per_core_s


def ttfb_p99_delta(report: RunReport, reference: RunReport | None) -> float | None:
    mine = _worst_judged_p99(report)
    theirs = _worst_judged_p99(reference) if reference is not None else None
    if mine is None or theirs is None:
        return None
    return mine - theirs


def _worst_judged_p99(report: RunReport | None) -> float | None:
    if report is None:
        return None
    p99s = [k.ttfb.p99_ms for k in report.per_kind if k.kind in JUDGED_KINDS and k.ttfb.count]
    return max(p99s) if p99s else None


def bound_text(bound: float) -> str:
    return "> 1000 ms" if bound < 0 else f"<= {bound:g} ms"
