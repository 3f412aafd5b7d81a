"""Every file of a blueprint, rendered from one deployment, as ``relative path -> text``."""

from __future__ import annotations

from switchboard.blueprint.matrix import Decision
from switchboard.blueprint.model import Deployment
from switchboard.blueprint.render_compose import COMPOSE_FILE, ESCALATION_RULES, render_compose
from switchboard.blueprint.render_haproxy import HAPROXY_FILE, render_haproxy
from switchboard.blueprint.render_kubernetes import render_kubernetes
from switchboard.blueprint.render_prometheus import render_prometheus
from switchboard.blueprint.render_runbook import (
    COMPOSE_ENV,
    SECRETS_ENV,
    render_compose_env,
    render_secrets_env,
)
from switchboard.blueprint.render_settings import SETTINGS_FILE, render_settings
from switchboard.blueprint.render_summary import SUMMARY_FILE, render_summary
from switchboard.config import builtin_example


def render_all(decision: Decision, d: Deployment, calibration_source: str) -> dict[str, str]:
    files: dict[str, str] = {SETTINGS_FILE: render_settings(d)}
    if d.nodes > 1:
        files[HAPROXY_FILE] = render_haproxy(d)
    files[COMPOSE_FILE] = render_compose(d)
    files.update({f"kubernetes/{k}": v for k, v in render_kubernetes(d).items()})
    files.update({f"prometheus/{k}": v for k, v in render_prometheus(d).items()})
    files[COMPOSE_ENV] = render_compose_env(d)
    files[SECRETS_ENV] = render_secrets_env(d)
    if "escalation" in d.services:
        files[ESCALATION_RULES] = builtin_example(ESCALATION_RULES).read_text()
    files[SUMMARY_FILE] = render_summary(decision, d, list(files), calibration_source)
    return files
