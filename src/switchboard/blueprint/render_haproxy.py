"""``haproxy.cfg``: the load balancer's file, made by the renderer ``switchboard cluster``
runs (``cluster/haproxy.py``), so production and the local cluster share every timeout,
check and retry.

One thing differs by necessity: in a deployment the servers are host names (``node-1``)
that only the container network resolves, and may not resolve yet when HAProxy starts.
``with_runtime_dns`` adds a resolver on Docker's embedded DNS and ``init-addr
last,libc,none``, so HAProxy starts with unresolved servers disabled and enables each
node once its name resolves.
"""

from __future__ import annotations

from switchboard.blueprint.model import Deployment
from switchboard.cluster.haproxy import LoadBalancer, Server, render_config

HAPROXY_FILE = "haproxy.cfg"
#: Docker's embedded DNS server, inside every container on a user-defined network.
DOCKER_DNS = "127.0.0.11:53"
_DEFAULT_SERVER = "    default-server "


def with_runtime_dns(cfg: str, nameserver: str = DOCKER_DNS) -> str:
    if cfg.count(_DEFAULT_SERVER) != 1:
        raise ValueError("haproxy.cfg has no single default-server line to extend")
    cfg = cfg.replace(_DEFAULT_SERVER, f"{_DEFAULT_SERVER}init-addr last,libc,none resolvers dns ")
    resolvers = [
        "resolvers dns",
        f"    nameserver dns1 {nameserver}",
        "    hold valid 10s",
        "    hold nx 2s",
        "    resolve_retries 3",
        "    timeout retry 1s",
    ]
    return cfg.rstrip("\n") + "\n\n" + "\n".join(resolvers) + "\n"


def render_haproxy(d: Deployment) -> str:
    lb = LoadBalancer(
        servers=tuple(Server(name=n, host=n, port=d.port) for n in d.node_ids),
        bind_host="0.0.0.0",
        port=d.port,
        longest_call_ms=d.longest_call_s * 1000,
        tunnel_margin_ms=(d.tunnel_timeout_s - d.longest_call_s) * 1000,
    )
    return with_runtime_dns(render_config(lb))
