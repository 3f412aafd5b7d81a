"""``SUMMARY.md``: the inputs, the decision factor by factor, the arithmetic, the files and
the migration path, in words a reviewer can check against the files beside it."""

from __future__ import annotations

from switchboard.blueprint.matrix import PROFILES, Decision, tier
from switchboard.blueprint.model import Deployment
from switchboard.blueprint.render_runbook import COMPOSE_ENV, SECRETS_ENV, runbook

SUMMARY_FILE = "SUMMARY.md"

FILE_ROLES: dict[str, str] = {
    "switchboard.toml": "node settings for the profile (secrets come from the environment)",
    "haproxy.cfg": (
        "the load balancer: leastconn, `/readyz` checks, `timeout tunnel` above the longest call"
    ),
    "docker-compose.yml": "the whole deployment on one Docker host, health checks, restarts",
    "kubernetes/": (
        "Deployment (a StatefulSet with a spill volume when event-driven), Service, "
        "PodDisruptionBudget, Ingress, ConfigMap (autoscaler, services)"
    ),
    "prometheus/prometheus.yml": (
        "scrape config for compose (`prometheus-kubernetes.yml`: pod discovery)"
    ),
    "prometheus/alerts.yml": (
        "alerts: TTFB p99 over budget, fallback rate, calls refused, Redis, bus backlog"
    ),
    "prometheus/alerts.test.yml": "`promtool test rules` cases: each alert fires, none if healthy",
    COMPOSE_ENV: "the variables docker compose needs, to copy to `.env`",
    SECRETS_ENV: "the keys of the `switchboard-secrets` Secret, to copy to `secrets.env`",
    "escalation.yaml": "the escalation rules (the shipped example), for compose and Kubernetes",
    "SUMMARY.md": "this file",
}

#: How each profile is reached from the one below it while calls are live: the new parts
#: start beside the old, the load balancer moves, the old drains (its live calls finish).
MIGRATION: dict[str, list[str]] = {
    "distributed": [
        "Run Redis with persistence (the Kubernetes steps above say how).",
        "Start the new nodes beside the old one: `switchboard serve --config switchboard.toml "
        "--redis-url redis://REDIS:6379/0 --node-id node-1` (one id each).",
        "Put them behind the load balancer with the old node (`haproxy.cfg` lists the new "
        "nodes; add the old one as one more `server` line), so new calls reach every node.",
        "Drain the old node with one SIGTERM: its `/readyz` answers 503 at once, so the load "
        "balancer sends it no new call (HAProxy checks every 200 ms), and its live calls "
        "finish on it within `drain_timeout_s`; then it exits by itself.",
        "Remove the old node's `server` line and reload HAProxy.",
    ],
    "event-driven": [
        "Run the bus and start the services (archive, analytics, escalation) first: they "
        "read from the bus, and nothing is published yet.",
        "Restart the nodes one at a time with `bus_url` set (a rolling update: "
        "`kubectl -n NAMESPACE rollout status` between nodes); each drains first, and a call "
        "it hands off resumes on another node from Redis.",
    ],
}


def render_summary(decision: Decision, d: Deployment, files: list[str], source: str) -> str:
    i = decision.inputs
    c = decision.capacity
    ttft = "not given" if i.llm_ttft_ms is None else f"{i.llm_ttft_ms:g} ms"
    out = [
        f"# Deployment blueprint: {d.profile}, {d.nodes} node(s)",
        "",
        "## Inputs",
        "",
        f"- concurrent calls: {i.calls}",
        f"- latency budget (TTFB p99): {i.budget_ms:g} ms"
        + (f" (planned: {decision.budget_ms:g} ms)" if decision.budget_ms != i.budget_ms else ""),
        f"- analytics: {_yes(i.analytics)}; escalation: {_yes(i.escalation)}",
        f"- LLM time to first token: {ttft}",
        f"- longest call: {d.longest_call_s} s",
        f"- calibration: {source}",
        "",
        "## Decision",
        "",
        f"Profile **{d.profile}**: state in {decision.state}, {decision.scaling} scaling, "
        f"{d.nodes} node(s) of at most {d.max_calls} calls"
        + (", the response cache on" if decision.cache else "")
        + ".",
        "",
        "| factor | input | row | asks for | what would change it |",
        "|---|---|---|---|---|",
    ]
    for f in decision.factors:
        mark = " (decides)" if f.profile == decision.profile else ""
        out.append(f"| {f.name} | {f.value} | {f.row} | {f.profile}{mark} | {f.change} |")
    out += ["", "Why, factor by factor:", ""]
    out += [f"- {f.name}: {f.why}, so {f.profile}." for f in decision.factors]
    out.append(
        "- The plan takes the most demanding row: a smaller profile would break that row's "
        "promise, a larger one keeps every smaller row's."
    )
    if decision.cache:
        out += [
            "",
            "The response cache is part of the plan: `cache` is set in `switchboard.toml`; "
            "mark the common answers cacheable in the agent file's `cache:` section "
            "(docs/cache.md).",
        ]
    if decision.warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in decision.warnings]
    out += ["", "## Capacity arithmetic", ""]
    if c.basis is not None:
        b = c.basis
        out += [
            f"- basis: `{b.name}` ({b.calls} calls): TTFB p99 {b.ttfb_p99_ms:.1f} ms + LLM TTFT "
            f"{c.llm_ttft_ms:g} ms <= {c.budget_ms:g} ms; {b.turns_per_core_s:.0f} turns per "
            f"core-second at {b.cpu_fraction:.0%} of a core",
            f"- sustained rate: {b.turns_per_core_s:.0f} x min(60%, {b.cpu_fraction:.0%}) = "
            f"{c.rate_turns_per_s:g} turns/s per node",
        ]
    else:
        out.append(
            "- no measured case fits the budget; rate of the best case: "
            f"{c.rate_turns_per_s:g} turns/s"
        )
    out += [
        f"- a call asks for a turn every {c.turn_interval_s:g} s: {c.rate_turns_per_s:g} x "
        f"{c.turn_interval_s:g} = {c.measured_calls} calls per node",
        f"- blast-radius cap {c.max_calls_per_node}: {c.calls_per_node} calls per node "
        "(`max_calls`; above it a node answers 503"
        + (", which HAProxy retries on another node)" if d.nodes > 1 else ")"),
    ]
    if d.shared_state:
        out.append(
            f"- nodes: ceil({i.calls} / {c.calls_per_node}) + 1 spare = {d.nodes}, so losing "
            "one node leaves room for every call"
        )
    else:
        out.append(
            "- one node; losing it drops every call until it is back (the single row accepts that)"
        )
    if d.autoscale is not None:
        a = d.autoscale
        out.append(
            f"- autoscaling on active calls per pod: target {a.target_calls_per_pod} "
            f"(= {c.calls_per_node} x ({d.nodes}-1)/{d.nodes}, so a lost pod's calls fit), "
            f"{a.min_replicas}..{a.max_replicas} replicas"
        )
    if d.bus_url is not None:
        out.append(
            "- events: each node's outbox spills to its own persistent volume under a stable "
            "node id (a StatefulSet pod name, a compose service name), so a node restarted "
            "during a bus outage replays what it spilled; analytics and escalation keep "
            "pod-local state, so each runs as exactly one replica on a volume (never "
            "autoscaled); the archive scales on its lag"
        )
    out += [
        f"- durations: longest call {d.longest_call_s} s < `drain_timeout_s` "
        f"{d.drain_timeout_s} s < `terminationGracePeriodSeconds` {d.grace_period_s} s; "
        f"HAProxy `timeout tunnel` {d.tunnel_timeout_s} s",
        "",
        "## Files",
        "",
        "| file | what it is for |",
        "|---|---|",
    ]
    roles = dict(FILE_ROLES)
    for name in [*files, SUMMARY_FILE]:
        key = "kubernetes/" if name.startswith("kubernetes/") else name
        if key in roles:
            out.append(f"| `{key}` | {roles.pop(key)} |")
    out += ["", *runbook(d, files), "", "## Migration path", ""]
    current = "single"
    if tier(d.profile) == tier(current):
        out.append("Nothing to add: run `switchboard serve --config switchboard.toml`.")
    else:
        out.append(
            f"From the current profile ({current}) without dropping a live call, in this order:"
        )
        out.append("")
        n = 1
        for profile in PROFILES[1 : tier(d.profile) + 1]:
            for step in MIGRATION[profile]:
                out.append(f"{n}. {step}")
                n += 1
    out += [
        "",
        "Then prove it: `switchboard validate --url wss://"
        + ("LB" if d.nodes > 1 else "HOST")
        + "/llm-websocket "
        f"--profile {d.profile} --budget-ms {decision.budget_ms:g} --calls {i.calls} "
        "--report validation.html`.",
        "",
    ]
    return "\n".join(out)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
