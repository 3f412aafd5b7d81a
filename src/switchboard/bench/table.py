"""How a bench run is shown: the table (one row per case and judged turn kind) and the notes
under it (relative figures, the cache, the servers' event loops).
"""

from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text

from switchboard.bench.judge import bound_text, ttfb_p99_delta, turns_per_core_ratio
from switchboard.bench.results import BenchCaseResult, BenchRun
from switchboard.config import BUDGET_MS
from switchboard.sim.results import RunReport, TurnKindStats
from switchboard.sim.verdict import JUDGED_KINDS


def comparisons(run: BenchRun) -> list[str]:
    """The relative figures, as sentences: share of the single profile's turns per core,
    TTFB p99 added by the load balancer, kill -> first answered turn."""
    reports = {r.case.name: r.report for r in run.results}
    lines = []
    for result in run.results:
        case, report = result.case, result.report
        if case.min_turns_per_core_vs is not None:
            name, share = case.min_turns_per_core_vs
            ratio = turns_per_core_ratio(report, reports.get(name))
            if ratio is not None:
                lines.append(
                    f"{case.name}: turns/s per core {ratio:.0%} of {name}'s (target >= {share:.0%})"
                )
        if case.max_ttfb_p99_delta_vs is not None:
            name, delta_ms = case.max_ttfb_p99_delta_vs
            delta = ttfb_p99_delta(report, reports.get(name))
            if delta is not None:
                lines.append(
                    f"{case.name}: TTFB p99 {delta:+.2f} ms over {name}'s "
                    f"(target <= +{delta_ms:g} ms)"
                )
        f = report.failover
        if f is not None:
            k = f.kill_to_answer
            lines.append(
                f"{case.name}: kill -9 of {f.killed_node} ({f.calls_on_killed_node} calls): "
                f"{f.calls_resumed}/{f.calls_lost_socket} resumed; kill -> first answered "
                f"turn p50 {k.p50_ms:.0f} ms, p99 {k.p99_ms:.0f} ms ({k.count} sockets)"
            )
    return lines


def bench_table(run: BenchRun) -> Table:
    """One row per case and judged turn kind: throughput, cost per turn, latency, verdict."""
    table = Table(title="switchboard bench (ms)", box=box.SIMPLE_HEAD, title_justify="left")
    for name in ("case", "kind", "calls", "turns/s"):
        table.add_column(name, justify="left" if name in ("case", "kind") else "right")
    for name in ("TTFB p50", "p90", "p99", "TTC p50", "p90", "p99"):
        table.add_column(name, justify="right")
    for name in ("server CPU", "turns/core·s", "targets", "verdict"):
        table.add_column(name, justify="right")
    for result in run.results:
        r = result.report
        judged: list[TurnKindStats | None] = [
            k for k in r.per_kind if k.kind in JUDGED_KINDS and k.turns
        ]
        for i, kind in enumerate(judged or [None]):
            first = i == 0
            table.add_row(
                Text(result.case.name if first else ""),
                Text(kind.kind if kind else "-"),
                str(r.calls_started) if first else "",
                f"{r.turns_per_s:.0f}" if first else "",
                *_latency_cells(kind),
                _server_cpu(r) if first else "",
                f"{r.turns_per_core_s:.0f}" if first and r.turns_per_core_s else "",
                _targets_cell(result) if first else Text(""),
                _verdict_cell(r) if first else Text(""),
            )
    for name in run.errors:
        table.add_row(Text(name), *[""] * 12, Text("ERROR", style="red"))
    return table


def describe_loop(loop: dict[str, float]) -> str:
    """One line on the server's own waits: what of a latency tail is the server's."""

    def bound(ms: float) -> str:
        return f"<= {ms:g} ms" if ms >= 0 else "over 2.5 s"

    line = (
        f"server event loop lag p99 {bound(loop.get('lag_p99_le_ms', -1))}, "
        f"max {bound(loop.get('lag_max_le_ms', -1))}"
    )
    gens = [g for g in ("0", "1", "2") if loop.get(f"gc_count:{g}")]
    if gens:
        counts = ", ".join(f"gen{g} {loop[f'gc_count:{g}']:.0f}" for g in gens)
        total_ms = sum(loop.get(f"gc_ms:{g}", 0.0) for g in gens)
        longest = max(loop.get(f"gc_max_le_ms:{g}", 0.0) for g in gens)
        line += f"; GC {counts}: {total_ms:.0f} ms in all, longest {bound(longest)}"
    return line


def bench_notes(run: BenchRun) -> list[Text]:
    """What the table cannot hold: targets, missed targets, verdict reasons, warnings, errors."""
    notes = [Text(f"targets: {_targets_text(run)}", style="dim")]
    notes += [Text(line) for line in comparisons(run)]
    for result in run.results:
        name = result.case.name
        if result.resources is not None:
            notes.append(Text(f"{name}: {result.resources.describe()}", style="dim"))
            if result.resources.fds_leaked:
                leaked = result.resources.fds_leaked
                notes.append(Text(f"{name}: {leaked} file descriptors not closed", style="red"))
        if result.server_loop:
            notes.append(Text(f"{name}: {describe_loop(result.server_loop)}", style="dim"))
        for missed in result.missed_targets:
            notes.append(Text(f"{name}: target missed: {missed}", style="red"))
        for reason in result.report.verdict_reasons:
            notes.append(Text(f"{name}: FAIL: {reason}", style="red"))
        for warning in result.report.verdict_warnings:
            notes.append(Text(f"{name}: warning: {warning}", style="yellow"))
        latency = result.event_latency_ms
        if latency is not None:
            archived = f"{latency.get('archived', 0):.0f} of {result.report.turns} turns archived"
            if "p50" in latency:
                shown = f"p50 {latency['p50']:.1f}, p99 {latency['p99']:.1f}"
                line = f"{name}: event latency (turn completed -> archived) ms: {shown}; {archived}"
            else:
                line = f"{name}: archive drained after the run: {archived}"
            notes.append(Text(line))
        notes.extend(Text(line) for line in result.chaos)
        if result.simulator_exit_code not in (0, 1):
            notes.append(Text(f"{name}: simulator exit code {result.simulator_exit_code}"))
    for name, error in run.errors.items():
        notes.append(Text(f"{name}: could not run: {error}", style="red"))
    notes.extend(cache_notes(run))
    return notes


def cache_notes(run: BenchRun) -> list[Text]:
    """Cache figures per cached case, and each slow-LLM pair side by side (off vs on)."""
    notes = []
    by_name = {r.case.name: r for r in run.results}
    for result in run.results:
        c = result.cache
        if not c:
            continue
        hits = ", ".join(
            f"{tier} {c.get(f'hits:{tier}', 0):.0f}"
            for tier in ("exact", "semantic", "single_flight")
        )
        p99s = ", ".join(
            f"{tier} {bound_text(c[f'hit_first_chunk_p99_le_ms:{tier}'])}"
            for tier in ("exact", "semantic")
            if f"hit_first_chunk_p99_le_ms:{tier}" in c
        )
        notes.append(
            Text(
                f"{result.case.name}: cache hits {hits}; misses {c.get('misses:exact', 0):.0f}; "
                f"hit rate {100 * c.get('hit_rate', 0):.0f}% of looked-up turns "
                f"({100 * c.get('hit_rate_all_turns', 0):.0f}% of all); cached first chunk p99 "
                f"(server) {p99s or 'n/a'}; backend errors {c.get('errors:unavailable', 0):.0f}"
            )
        )
        base = by_name.get(result.case.name.removesuffix("-cached"))
        if base is not None and base is not result:
            off, on = _response_ttfb(base.report), _response_ttfb(result.report)
            if off and on:
                notes.append(
                    Text(
                        f"{base.case.name} (LLM TTFT {base.case.ttft_ms:g} ms), TTFB p50/p99: "
                        f"cache off {off[0]:.0f}/{off[1]:.0f} ms, cache on {on[0]:.0f}/"
                        f"{on[1]:.0f} ms; budget {BUDGET_MS['distributed']} ms"
                    )
                )
    return notes


def _response_ttfb(report: RunReport) -> tuple[float, float] | None:
    for kind in report.per_kind:
        if kind.kind == "response" and kind.ttfb.count:
            return kind.ttfb.p50_ms, kind.ttfb.p99_ms
    return None


def _targets_text(run: BenchRun) -> str:
    parts = []
    for result in run.results:
        case = result.case
        wanted = []
        if case.min_turns_per_core_s is not None:
            wanted.append(f">= {case.min_turns_per_core_s:g} turns/core·s")
        if case.max_ttfb_p99_ms is not None:
            wanted.append(f"TTFB p99 <= {case.max_ttfb_p99_ms:g} ms")
        if case.min_turns_per_core_vs is not None:
            name, share = case.min_turns_per_core_vs
            wanted.append(f">= {share:.0%} of {name}'s turns/core·s")
        if case.max_ttfb_p99_delta_vs is not None:
            name, delta_ms = case.max_ttfb_p99_delta_vs
            wanted.append(f"TTFB p99 <= {name}'s + {delta_ms:g} ms")
        if case.max_failover_p99_ms is not None:
            wanted.append(f"kill -> answered p99 <= {case.max_failover_p99_ms:g} ms")
        if case.max_cached_ttfb_p99_ms is not None:
            wanted.append(f"cached TTFB p99 <= {case.max_cached_ttfb_p99_ms:g} ms")
        if case.max_pong_rtt_p99_ms is not None:
            wanted.append(f"pong RTT p99 <= {case.max_pong_rtt_p99_ms:g} ms")
        if case.max_failed_calls is not None:
            wanted.append(f"<= {case.max_failed_calls} failed calls")
        if wanted:
            parts.append(f"{case.name} {' and '.join(wanted)}")
    return "; ".join(parts) or "none"


def _latency_cells(kind: TurnKindStats | None) -> list[str]:
    if kind is None:
        return ["-"] * 6
    values = (
        kind.ttfb.p50_ms,
        kind.ttfb.p90_ms,
        kind.ttfb.p99_ms,
        kind.ttc.p50_ms,
        kind.ttc.p90_ms,
        kind.ttc.p99_ms,
    )
    return [f"{v:.2f}" if v < 10 else f"{v:.1f}" for v in values]


def _server_cpu(report: RunReport) -> str:
    return "" if report.server is None else f"{report.server.cpu_percent:.0f}%"


def _targets_cell(result: BenchCaseResult) -> Text:
    case = result.case
    targets = (
        case.min_turns_per_core_s,
        case.max_ttfb_p99_ms,
        case.min_turns_per_core_vs,
        case.max_ttfb_p99_delta_vs,
        case.max_failover_p99_ms,
        case.max_cached_ttfb_p99_ms,
        case.max_pong_rtt_p99_ms,
        case.max_failed_calls,
    )
    if all(t is None for t in targets):
        return Text("-")
    if result.missed_targets:
        return Text("MISSED", style="bold red")
    return Text("met", style="green")


def _verdict_cell(report: RunReport) -> Text:
    text = Text("PASS" if report.passed else "FAIL", style="green" if report.passed else "red")
    if report.verdict_warnings:
        text.append(" !", style="yellow")
    return text
