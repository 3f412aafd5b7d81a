"""The generated event-driven deployment (compose) serves and scrapes the services'
``/metrics``, so the consumer alerts (lag, dead letters, gaps) have data to read."""

from __future__ import annotations

import yaml

from switchboard.blueprint.render_compose import compose_model
from switchboard.blueprint.render_prometheus import (
    SERVICE_METRICS_PORT,
    SERVICES_JOB,
    render_prometheus,
)
from tests.fixtures.blueprints import deployment_for


def test_archive_and_escalation_serve_metrics_and_prometheus_scrapes_them() -> None:
    d = deployment_for("event-driven")
    services = compose_model(d)["services"]
    for name in ("archive", "escalation"):
        command = services[name]["command"]
        at = command.index("--metrics-port")
        assert command[at + 1] == str(SERVICE_METRICS_PORT)
        assert command[command.index("--host") + 1] == "0.0.0.0"
    scrape = yaml.safe_load(render_prometheus(d)["prometheus.yml"])
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    targets = jobs[SERVICES_JOB]["static_configs"][0]["targets"]
    assert f"archive:{SERVICE_METRICS_PORT}" in targets
    assert f"escalation:{SERVICE_METRICS_PORT}" in targets
    assert any(t.startswith("analytics:") for t in targets)


def test_without_a_bus_there_is_no_services_job() -> None:
    scrape = yaml.safe_load(render_prometheus(deployment_for("distributed"))["prometheus.yml"])
    assert [job["job_name"] for job in scrape["scrape_configs"]] == ["switchboard"]
