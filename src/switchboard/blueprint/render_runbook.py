"""The steps that take the generated files to a running deployment, in the order a person
types them, one list per target (docker compose, Kubernetes), and only the steps for what
was asked: no Redis step for a single node, no rules step without escalation.

The steps are data (``Step``), rendered into SUMMARY.md, so a test can replay them: each
Kubernetes object a step applies must exist in the files, after everything it needs (its
namespace, the Secret and ConfigMaps it reads, the workload an autoscaler targets).
"""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.blueprint.model import Deployment
from switchboard.blueprint.render_compose import COMPOSE_FILE, ESCALATION_RULES
from switchboard.blueprint.render_kubernetes import SECRET, node_kind
from switchboard.cluster.valkey import persistence_args

SECRETS_ENV = "secrets.env.example"
COMPOSE_ENV = "compose.env.example"


@dataclass(frozen=True, slots=True)
class Step:
    """One thing to do; ``commands`` are typed as written, in order."""

    what: str
    commands: tuple[str, ...] = ()


def secret_keys(d: Deployment) -> list[tuple[str, str, bool]]:
    """``(key, example value, required)`` of the ``switchboard-secrets`` Secret."""
    keys = [("retell-api-key", "", True), ("url-secret", "", False)]
    if d.shared_state:
        keys.append(("redis-url", "redis://redis.example.internal:6379/0", True))
    if d.bus_url is not None:
        example = "kafka://kafka:9092" if d.bus == "kafka" else "redis://redis:6379/0"
        keys.append(("bus-url", example, True))
    if "archive" in d.services:
        keys.append(("archive-db-url", "postgresql://archive@postgres:5432/archive", True))
    return keys


def render_secrets_env(d: Deployment) -> str:
    lines = [
        "# The switchboard-secrets Secret, one KEY=value per line. Copy to secrets.env, fill in,",
        "# never commit it: kubectl create secret generic switchboard-secrets "
        "--from-env-file=secrets.env",
    ]
    for key, example, required in secret_keys(d):
        if required:
            lines.append(f"{key}={example}")
        else:
            lines += [f"# optional: uncomment to set {key}", f"# {key}="]
    return "\n".join(lines) + "\n"


def render_compose_env(d: Deployment) -> str:
    return (
        "# docker compose reads .env beside docker-compose.yml. Copy this file to .env, fill in,\n"
        "# never commit it.\n"
        "SWITCHBOARD_RETELL_API_KEY=\n"
    )


def compose_steps(d: Deployment) -> list[Step]:
    url = f"ws://HOST:{d.port}/llm-websocket"
    steps = [
        Step(f"Build the image `{d.image}` from the repository", ("make image",)),
        Step(
            f"Put the Retell API key in `.env` (from `{COMPOSE_ENV}`)",
            (f"cp {COMPOSE_ENV} .env",),
        ),
    ]
    if "escalation" in d.services:
        steps.append(
            Step(
                f"Review the escalation rules in `{ESCALATION_RULES}` (the example rules; "
                "docs/services.md)"
            )
        )
    steps += [
        Step("Check the file and its variables", ("docker compose config --quiet",)),
        Step(
            "Start everything and wait until every part is healthy"
            + (" (Redis with its append-only file)" if d.shared_state else ""),
            ("docker compose up -d --wait",),
        ),
        Step(f"Point Retell's Custom LLM URL at `{url}`"),
    ]
    return steps


def kubernetes_steps(d: Deployment, files: list[str]) -> list[Step]:
    ns = d.namespace
    steps = [
        Step("Create the namespace", (f"kubectl create namespace {ns}",)),
        Step(
            f"Create the `{SECRET}` Secret from `{SECRETS_ENV}` (copied to `secrets.env` and "
            "filled in)",
            (
                f"cp {SECRETS_ENV} secrets.env",
                f"kubectl -n {ns} create secret generic {SECRET} --from-env-file=secrets.env",
            ),
        ),
    ]
    if d.shared_state:
        persistence = " ".join(a if a else "''" for a in persistence_args(True))
        steps.append(
            Step(
                "Run a Redis every pod can reach at `redis-url`, with persistence (a Redis "
                "that restarts empty greets every call in flight again), e.g.",
                (f"redis-server {persistence}",),
            )
        )
    if d.bus == "kafka":
        steps.append(Step("Run a Kafka cluster every pod can reach at `bus-url`"))
    if "escalation" in d.services:
        steps.append(
            Step(
                f"Load the escalation rules (`{ESCALATION_RULES}`) into their ConfigMap",
                (
                    f"kubectl -n {ns} create configmap {d.name}-escalation-rules "
                    f"--from-file={ESCALATION_RULES}",
                ),
            )
        )
    core = ["configmap.yaml", "service.yaml", "deployment.yaml", "pdb.yaml", "ingress.yaml"]
    apply = " ".join(f"-f kubernetes/{f}" for f in core)
    steps.append(
        Step(
            "Apply the nodes (the Ingress needs ingress-nginx) and wait for them",
            (
                f"kubectl apply {apply}",
                f"kubectl -n {ns} rollout status {node_kind(d).lower()}/{d.name}",
            ),
        )
    )
    if "kubernetes/services.yaml" in files:
        steps.append(
            Step(
                f"Apply the services ({', '.join(d.services)})",
                ("kubectl apply -f kubernetes/services.yaml",),
            )
        )
    if "kubernetes/hpa.yaml" in files:
        steps.append(
            Step(
                "Autoscaling the nodes needs Prometheus (scraping with "
                "`prometheus/prometheus-kubernetes.yml`) and Prometheus Adapter in the "
                "`monitoring` namespace: give the adapter its rule, then apply the autoscaler",
                (
                    "kubectl apply -f kubernetes/prometheus-adapter.yaml",
                    "kubectl -n monitoring rollout restart deployment/prometheus-adapter",
                    "kubectl apply -f kubernetes/hpa.yaml",
                ),
            )
        )
    if "kubernetes/keda.yaml" in files:
        steps.append(
            Step(
                "Autoscaling the archive on its lag needs KEDA installed",
                ("kubectl apply -f kubernetes/keda.yaml",),
            )
        )
    steps.append(Step("Point Retell's Custom LLM URL at the Ingress: `wss://HOST/llm-websocket`"))
    return steps


def render_steps(steps: list[Step]) -> list[str]:
    out: list[str] = []
    for n, step in enumerate(steps, start=1):
        out.append(f"{n}. {step.what}" + (":" if step.commands else "."))
        if step.commands:
            out += ["", "   ```sh", *(f"   {c}" for c in step.commands), "   ```"]
    return out


def runbook(d: Deployment, files: list[str]) -> list[str]:
    """The two SUMMARY.md sections: compose, then Kubernetes."""
    return [
        f"## Run it with docker compose (`{COMPOSE_FILE}`)",
        "",
        *render_steps(compose_steps(d)),
        "",
        "## Run it on Kubernetes (`kubernetes/`)",
        "",
        *render_steps(kubernetes_steps(d, files)),
    ]
