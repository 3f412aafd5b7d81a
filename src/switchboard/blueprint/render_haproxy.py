"""``haproxy.cfg``: the load balancer's file, made by the renderer ``switchboard cluster``
runs, so production and the local cluster share every timeout and check."""

from __future__ import annotations

from switchboard.blueprint.model import Deployment

HAPROXY_FILE = "haproxy.cfg"


def render_haproxy(d: Deployment) -> str:
    from switchboard.cluster.haproxy import LoadBalancer, Server, render_config

    lb = LoadBalancer(
        servers=tuple(Server(name=n, host=n, port=d.port) for n in d.node_ids),
        bind_host="0.0.0.0",
        port=d.port,
        longest_call_ms=d.longest_call_s * 1000,
        tunnel_margin_ms=(d.tunnel_timeout_s - d.longest_call_s) * 1000,
    )
    return render_config(lb)
