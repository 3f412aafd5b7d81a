"""``switchboard.toml``: the node settings of a deployment.

Only settings this build knows are written (``Settings`` forbids unknown keys, so a file
naming one would not load), and never a secret: the Redis URL, the Retell API key and the
URL secret come from the environment (``SWITCHBOARD_*``), which compose and Kubernetes fill
from their own secret stores.
"""

from __future__ import annotations

import json

from switchboard.blueprint.model import Deployment
from switchboard.config import Settings

SETTINGS_FILE = "switchboard.toml"


def node_settings(d: Deployment) -> dict[str, object]:
    values: dict[str, object] = {
        "profile": d.profile,
        "host": "0.0.0.0",
        "port": d.port,
        "max_calls": d.max_calls,
        "drain_timeout_s": float(d.drain_timeout_s),
        "state_ttl_s": float(d.state_ttl_s),
        "log_json": True,
        "log_level": "info",
    }
    known = Settings.model_fields
    if d.bus_url is not None and "bus_url" in known:
        values["bus_url"] = d.bus_url
        # a persistent volume in compose and Kubernetes: the spill file outlives the node
        values["outbox_dir"] = "/var/lib/switchboard/outbox"
    if d.cache and "cache" in known:
        values["cache"] = "redis" if d.shared_state else "memory"
    return {k: v for k, v in values.items() if k in known}


def render_toml(values: dict[str, object], header: str) -> str:
    """Flat TOML: strings, numbers and booleans are all a settings file holds."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for key, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = repr(value)
        elif isinstance(value, str):
            text = json.dumps(value)
        else:
            raise TypeError(f"{key}: cannot write {type(value).__name__} to TOML")
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def render_settings(d: Deployment) -> str:
    header = (
        f"switchboard settings for the {d.profile} profile ({d.nodes} node(s), "
        f"{d.budget_ms:g} ms budget).\n"
        "Secrets come from the environment: SWITCHBOARD_REDIS_URL, SWITCHBOARD_RETELL_API_KEY,\n"
        "SWITCHBOARD_URL_SECRET. Each node gets its own --node-id."
    )
    return render_toml(node_settings(d), header)
