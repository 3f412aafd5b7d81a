"""The decision matrix: which profile a load needs, factor by factor, and why (pure).

| factor | single | distributed | event-driven |
|---|---|---|---|
| concurrent calls | < 10 | 10-100 | 100+ |
| latency budget | 800 ms | 500 ms | 300 ms |
| state | memory | Redis | Redis + events |
| scaling | vertical | horizontal | auto |

Each factor names the row its input falls in and the profile that row asks for; the plan
takes the most demanding one, because a smaller profile would break that factor's row
while a larger one keeps every smaller row's promise. Inputs that pull apart are warned
about with the nearest plan that keeps them all (the one returned).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from switchboard.blueprint.capacity import Capacity
from switchboard.config import BUDGET_MS

PROFILES: tuple[str, ...] = ("single", "distributed", "event-driven")
STATE = {"single": "memory", "distributed": "Redis", "event-driven": "Redis + events"}
SCALING = {"single": "vertical", "distributed": "horizontal", "event-driven": "auto"}
#: Calls rows: fewer than ``SMALL_CALLS`` is single, up to ``LARGE_CALLS`` distributed.
SMALL_CALLS = 10
LARGE_CALLS = 100


class InputError(ValueError):
    """Inputs no plan can answer (negative calls, a zero budget...): one line, exit 2."""


@dataclass(frozen=True, slots=True)
class Inputs:
    calls: int
    budget_ms: float
    analytics: bool = False
    escalation: bool = False
    #: the LLM's time to first token, p99 (``None``: not given, counted as 0)
    llm_ttft_ms: float | None = None
    #: a node count asked for (``None``: decide it)
    nodes: int | None = None
    #: a profile asked for (``None``: decide it)
    profile: str | None = None

    def __post_init__(self) -> None:
        if self.calls < 1:
            raise InputError(f"--calls must be at least 1, got {self.calls}")
        if not math.isfinite(self.budget_ms) or self.budget_ms <= 0:
            raise InputError(f"--budget-ms must be a positive number of ms, got {self.budget_ms:g}")
        if self.llm_ttft_ms is not None and (
            not math.isfinite(self.llm_ttft_ms) or self.llm_ttft_ms < 0
        ):
            raise InputError(f"--llm-ttft-ms must not be negative, got {self.llm_ttft_ms:g}")
        if self.nodes is not None and self.nodes < 1:
            raise InputError(f"--nodes must be at least 1, got {self.nodes}")
        if self.profile is not None and self.profile not in PROFILES:
            raise InputError(
                f"unknown profile {self.profile!r}; expected one of {', '.join(PROFILES)}"
            )


@dataclass(frozen=True, slots=True)
class Factor:
    """One row of the matrix as the inputs meet it."""

    name: str
    value: str
    row: str
    profile: str
    why: str
    #: what input would move this factor to another row
    change: str


@dataclass(frozen=True, slots=True)
class Decision:
    inputs: Inputs
    profile: str
    nodes: int
    capacity: Capacity
    factors: tuple[Factor, ...]
    #: the budget the plan is held to (the one asked, or the tightest row if below it)
    budget_ms: float
    #: the response cache is part of the plan (the LLM alone cannot meet the budget)
    cache: bool
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def state(self) -> str:
        return STATE[self.profile]

    @property
    def scaling(self) -> str:
        return SCALING[self.profile]

    @property
    def deciding(self) -> tuple[Factor, ...]:
        """The factors whose row is the chosen profile."""
        return tuple(f for f in self.factors if f.profile == self.profile)


def tier(profile: str) -> int:
    return PROFILES.index(profile)


def calls_factor(calls: int) -> Factor:
    if calls < SMALL_CALLS:
        row, profile = f"< {SMALL_CALLS}", "single"
        change = f"{SMALL_CALLS} calls or more would need distributed"
    elif calls <= LARGE_CALLS:
        row, profile = f"{SMALL_CALLS}-{LARGE_CALLS}", "distributed"
        change = f"fewer than {SMALL_CALLS} would allow single; over {LARGE_CALLS}, event-driven"
    else:
        row, profile = f"{LARGE_CALLS}+", "event-driven"
        change = f"{LARGE_CALLS} calls or fewer would allow distributed"
    return Factor(
        name="concurrent calls",
        value=str(calls),
        row=row,
        profile=profile,
        why=f"{calls} concurrent calls fall in the {row} row",
        change=change,
    )


def budget_factor(budget_ms: float) -> Factor:
    single, distributed, events = (BUDGET_MS[p] for p in PROFILES)
    if budget_ms >= single:
        row, profile = f">= {single} ms", "single"
        change = f"a budget under {single} ms would need distributed"
    elif budget_ms >= distributed:
        row, profile = f"{distributed}-{single - 1} ms", "distributed"
        change = f"{single} ms or more would allow single; under {distributed} ms, event-driven"
    else:
        row = f"<= {events} ms" if budget_ms <= events else f"{events}-{distributed - 1} ms"
        profile = "event-driven"
        change = f"{distributed} ms or more would allow distributed"
    return Factor(
        name="latency budget",
        value=f"{budget_ms:g} ms",
        row=row,
        profile=profile,
        why=f"a TTFB budget of {budget_ms:g} ms falls in the {row} row",
        change=change,
    )


def state_factor(analytics: bool, escalation: bool) -> Factor:
    wanted = [n for n, on in (("analytics", analytics), ("escalation", escalation)) if on]
    if wanted:
        return Factor(
            name="state",
            value=", ".join(wanted),
            row="Redis + events",
            profile="event-driven",
            why=f"{' and '.join(wanted)} consume call events from a bus",
            change="without --analytics and --escalation no bus is needed",
        )
    return Factor(
        name="state",
        value="calls only",
        row="memory",
        profile="single",
        why="no service consumes call events, so no bus is needed",
        change="--analytics or --escalation would need event-driven (a bus)",
    )


def capacity_factor(calls: int, capacity: Capacity) -> Factor:
    per_node = capacity.calls_per_node
    if calls <= per_node:
        return Factor(
            name="capacity",
            value=f"{per_node} calls/node",
            row="one node",
            profile="single",
            why=f"one node carries {per_node} calls within the budget, {calls} needed",
            change=f"more than {per_node} calls would need several nodes",
        )
    return Factor(
        name="capacity",
        value=f"{per_node} calls/node",
        row="several nodes",
        profile="distributed",
        why=f"{calls} calls exceed one node's {per_node} within the budget",
        change=f"{per_node} calls or fewer would fit one node",
    )


def decide(inputs: Inputs, capacity: Capacity) -> Decision:
    """The profile, node count and warnings for ``inputs`` given a node's ``capacity``."""
    factors = (
        calls_factor(inputs.calls),
        budget_factor(inputs.budget_ms),
        state_factor(inputs.analytics, inputs.escalation),
        capacity_factor(inputs.calls, capacity),
    )
    profile = max((f.profile for f in factors), key=tier)
    warnings: list[str] = list(capacity.notes)
    if inputs.llm_ttft_ms is None:
        warnings.append(
            "no --llm-ttft-ms: the plan counts 0 ms for your LLM's time to first token, so the "
            "whole budget goes to switchboard; pass your LLM's TTFT p99 (e.g. --llm-ttft-ms 250) "
            "unless every answer is scripted or cached"
        )
    calls_f, budget_f = factors[0], factors[1]
    if tier(calls_f.profile) > tier(budget_f.profile):
        pool = "one node" if budget_f.profile == "single" else "a fixed pool"
        warnings.append(
            f"{inputs.calls} calls with a budget of {inputs.budget_ms:g} ms: the budget's row is "
            f"{budget_f.profile} ({pool}), "
            f"but {inputs.calls} calls need {calls_f.profile}; the plan is {profile}, keeping the "
            f"{inputs.budget_ms:g} ms budget"
        )
    floor_ms = min(BUDGET_MS.values())
    budget_ms = inputs.budget_ms
    cache = False
    if budget_ms < floor_ms:
        budget_ms, cache = float(floor_ms), True
        warnings.append(
            f"a {inputs.budget_ms:g} ms budget is below the tightest row ({floor_ms} ms), which "
            f"nothing here promises to beat; nearest sound plan: event-driven, the response "
            f"cache on, a {floor_ms} ms budget"
        )
    ttft = inputs.llm_ttft_ms or 0.0
    node_p99 = capacity.node_p99_ms
    if inputs.llm_ttft_ms is not None and ttft + node_p99 > inputs.budget_ms:
        cache = True
        needed = math.ceil(ttft + node_p99)
        warnings.append(
            f"the LLM's TTFT ({ttft:g} ms) leaves no room in a {inputs.budget_ms:g} ms budget "
            f"without the cache: uncached turns take at least {needed} ms; nearest sound plan: "
            f"the response cache on (common answers within budget) and a budget of {needed} ms "
            "or more for the rest"
        )
    spare = profile != "single"
    nodes = capacity.nodes_for(inputs.calls, spare=spare)
    if spare:
        nodes = max(nodes, 2)
    if inputs.profile is not None and tier(inputs.profile) < tier(profile):
        deciding = ", ".join(f.name for f in factors if f.profile == profile)
        warnings.append(
            f"--profile {inputs.profile} cannot carry these inputs ({deciding} need {profile}); "
            f"nearest sound plan: {profile}"
        )
    elif inputs.profile is not None:
        profile = inputs.profile
        spare = profile != "single"
        nodes = max(capacity.nodes_for(inputs.calls, spare=spare), 2 if spare else 1)
    if inputs.nodes is not None:
        if inputs.nodes < nodes:
            warnings.append(
                f"{inputs.nodes} node(s) cannot carry {inputs.calls} calls at "
                f"{capacity.calls_per_node} per node"
                + (" with one node lost" if spare else "")
                + f"; nearest sound plan: {nodes} nodes"
            )
        elif profile == "single" and inputs.nodes > 1:
            warnings.append(
                f"{inputs.nodes} nodes need shared state; the single profile runs one node"
            )
        else:
            nodes = inputs.nodes
    return Decision(
        inputs=inputs,
        profile=profile,
        nodes=nodes,
        capacity=capacity,
        factors=factors,
        budget_ms=budget_ms,
        cache=cache,
        warnings=tuple(warnings),
    )
