"""The live progress line of a run: calls, turns/s, TTFB so far, violations.

Rendered a few times a second from ``RunMetrics``; it reads counters and two percentiles,
so it costs the run almost nothing. Only shown on a terminal (``--quiet`` turns it off).
"""

from __future__ import annotations

import time

from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from switchboard.sim.metrics import RunMetrics


class LiveView:
    """A ``rich`` table of the run so far; use as a context manager around the run."""

    def __init__(self, metrics: RunMetrics, calls_planned: str, console: Console) -> None:
        self.metrics = metrics
        self.calls_planned = calls_planned
        self._last_turns = 0
        self._last_at = time.perf_counter()
        self._rate = 0.0
        self._live = Live(
            console=console,
            get_renderable=self.render,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)

    def _turn_rate(self) -> float:
        now = time.perf_counter()
        if now - self._last_at >= 0.5:
            turns = self.metrics.turns
            self._rate = (turns - self._last_turns) / (now - self._last_at)
            self._last_turns, self._last_at = turns, now
        return self._rate

    def render(self) -> RenderableType:
        m = self.metrics
        response = m.per_kind["response"].ttfb
        failed = sum(m.calls_failed.values())
        violations = sum(m.violations.values())
        table = Table.grid(padding=(0, 2))
        for _ in range(6):
            table.add_column()
        table.add_row(
            Text(f"{m.elapsed():6.1f} s", style="dim"),
            Text(
                f"calls {m.calls_active} active, {m.calls_completed} done of {self.calls_planned}"
            ),
            Text(f"failed {failed}", style="red" if failed else "green"),
            Text(f"turns {m.turns} ({self._turn_rate():.0f}/s)"),
            Text(
                f"TTFB p50 {response.percentile_ms(50):.1f} ms"
                f"  p99 {response.percentile_ms(99):.1f} ms"
            ),
            Text(f"violations {violations}", style="red" if violations else "green"),
        )
        return table
