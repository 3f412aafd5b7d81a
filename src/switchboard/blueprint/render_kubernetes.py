"""Kubernetes manifests for the nodes and, event-driven, the services.

What each value guards against:

- ``terminationGracePeriodSeconds`` > ``preStop`` sleep + ``drain_timeout_s`` > the longest
  call: a rolling update or a node drain never kills a pod while a call can still finish
  on it (a grace shorter than the drain cuts calls mid-sentence);
- readiness ``/readyz`` (503 while draining or full) takes a pod out of the Service, and
  liveness ``/healthz`` (the process answers) restarts only a stuck one;
- the autoscaler follows ``switchboard_active_calls`` per pod through Prometheus Adapter:
  a voice node at its call cap may use little CPU, so CPU would scale too late;
- a PodDisruptionBudget lets voluntary disruptions take one pod at a time;
- KEDA scales the archive on its consumer lag, the work actually waiting for it (its
  state is the shared database); analytics and escalation keep their state in a
  pod-local SQLite file, so each runs as exactly one replica (a StatefulSet) on a
  persistent volume, never autoscaled: two replicas would double count and split the
  rules, and a restart would wipe pending escalations;
- event-driven nodes are a StatefulSet: a stable pod name is the node id, and the
  outbox's spill file lives on the pod's own persistent volume, so a pod restarted
  during a bus outage finds and replays what it spilled.

Secrets are referenced by name (``switchboard-secrets``), never written.
"""

from __future__ import annotations

from typing import Any

import yaml

from switchboard.blueprint.model import PRESTOP_SLEEP_S, Deployment
from switchboard.blueprint.render_prometheus import ANALYTICS_PORT, SERVICE_METRICS_PORT
from switchboard.blueprint.render_settings import SETTINGS_FILE, render_settings

SECRET = "switchboard-secrets"
CONFIG_DIR = "/etc/switchboard"
#: Redis is not deployed by these files: the nodes read its URL from the secret
REDIS_NOTE = (
    "# Redis is yours: SWITCHBOARD_REDIS_URL comes from the secret (key redis-url). Run it with\n"
    "# persistence, appendonly yes and appendfsync everysec: a Redis that restarts empty loses\n"
    "# every call's state and fencing, and each call in flight is greeted again.\n"
)
#: the Kubernetes release the manifests are written and validated for
KUBERNETES_VERSION = "1.33.0"
NODE_FILES = ("configmap.yaml", "deployment.yaml", "service.yaml", "pdb.yaml", "ingress.yaml")
#: where the outbox's spill file lives (``outbox_dir`` in the settings file)
OUTBOX_DIR = "/var/lib/switchboard/outbox"
#: the image's user (Dockerfile); fsGroup makes the spill and data volumes writable by it
IMAGE_UID = 10001
POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": IMAGE_UID,
    "runAsGroup": IMAGE_UID,
    "fsGroup": IMAGE_UID,
}
#: where a singular service keeps its SQLite state
SERVICE_DATA_DIR = "/var/lib/switchboard"
#: services whose state is pod-local: one replica, a persistent volume, no autoscaler
SINGULAR_SERVICES = frozenset({"analytics", "escalation"})


def _claim(name: str, size: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def _labels(d: Deployment, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": d.name, "app.kubernetes.io/component": component}


def _meta(d: Deployment, name: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": d.namespace, "labels": _labels(d, component)}


def _secret_env(name: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": SECRET, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def configmap(d: Deployment) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(d, f"{d.name}-config", "node"),
        "data": {SETTINGS_FILE: render_settings(d)},
    }


def node_deployment(d: Deployment) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        _secret_env("SWITCHBOARD_RETELL_API_KEY", "retell-api-key"),
        _secret_env("SWITCHBOARD_URL_SECRET", "url-secret", optional=True),
    ]
    if d.shared_state:
        env.append(_secret_env("SWITCHBOARD_REDIS_URL", "redis-url"))
    if d.bus_url is not None:
        # the same reference the services read; it overrides the file's compose address
        env.append(_secret_env("SWITCHBOARD_BUS_URL", "bus-url"))
    probe = {"periodSeconds": 2, "timeoutSeconds": 1}
    container: dict[str, Any] = {
        "name": "switchboard",
        "image": d.image,
        "args": [
            "serve",
            "--config",
            f"{CONFIG_DIR}/{SETTINGS_FILE}",
            "--node-id",
            "$(POD_NAME)",
        ],
        "ports": [{"name": "http", "containerPort": d.port, "protocol": "TCP"}],
        "env": env,
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "failureThreshold": 1,
            **probe,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "failureThreshold": 5,
            "initialDelaySeconds": 5,
            **probe,
        },
        # Endpoints drop the pod while it sleeps, so no new call lands on a node that drains.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SLEEP_S)]}}},
        "resources": {
            "requests": {"cpu": "1", "memory": "512Mi"},
            "limits": {"memory": "1Gi"},
        },
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    stateful = d.bus_url is not None
    spec: dict[str, Any] = {
        "selector": {"matchLabels": _labels(d, "node")},
        "template": {
            "metadata": {"labels": _labels(d, "node")},
            "spec": {
                "terminationGracePeriodSeconds": d.grace_period_s,
                "securityContext": POD_SECURITY,
                "containers": [container],
                "volumes": [{"name": "config", "configMap": {"name": f"{d.name}-config"}}],
            },
        },
    }
    if stateful:
        # The spill file outlives the pod; the pod name (the node id) is stable.
        container["volumeMounts"].append({"name": "outbox", "mountPath": OUTBOX_DIR})
        spec["serviceName"] = d.name
        spec["podManagementPolicy"] = "Parallel"
        spec["updateStrategy"] = {"type": "RollingUpdate"}
        spec["volumeClaimTemplates"] = [_claim("outbox", "2Gi")]
    else:
        spec["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }
    if d.autoscale is None:
        spec["replicas"] = d.nodes
    return {
        "apiVersion": "apps/v1",
        "kind": node_kind(d),
        "metadata": _meta(d, d.name, "node"),
        "spec": spec,
    }


def node_kind(d: Deployment) -> str:
    """A StatefulSet when nodes spill events to disk (event-driven), else a Deployment."""
    return "StatefulSet" if d.bus_url is not None else "Deployment"


def service(d: Deployment) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(d, d.name, "node"),
        "spec": {
            "selector": _labels(d, "node"),
            "ports": [{"name": "http", "port": d.port, "targetPort": "http"}],
        },
    }


def pdb(d: Deployment) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(d, d.name, "node"),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _labels(d, "node")}},
    }


def ingress(d: Deployment) -> dict[str, Any]:
    """ingress-nginx in front of the Service, its timeouts above the longest call."""
    tunnel = str(d.tunnel_timeout_s)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            **_meta(d, d.name, "node"),
            "annotations": {
                "nginx.ingress.kubernetes.io/proxy-read-timeout": tunnel,
                "nginx.ingress.kubernetes.io/proxy-send-timeout": tunnel,
            },
        },
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": path,
                                "pathType": "Prefix",
                                "backend": {"service": {"name": d.name, "port": {"name": "http"}}},
                            }
                            for path in ("/llm-websocket", "/webhook")
                        ]
                    }
                }
            ],
        },
    }


def hpa(d: Deployment) -> dict[str, Any]:
    assert d.autoscale is not None
    a = d.autoscale
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(d, d.name, "node"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": node_kind(d), "name": d.name},
            "minReplicas": a.min_replicas,
            "maxReplicas": a.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "switchboard_active_calls"},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": str(a.target_calls_per_pod),
                        },
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 2, "periodSeconds": 30}],
                },
                # A pod taken away drains for up to the grace period: scale down slowly.
                "scaleDown": {
                    "stabilizationWindowSeconds": 600,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
                },
            },
        },
    }


def adapter_rules(d: Deployment) -> dict[str, Any]:
    """Prometheus Adapter rule exposing ``switchboard_active_calls`` as a Pods metric."""
    rules = {
        "rules": [
            {
                "seriesQuery": 'switchboard_active_calls{namespace!="",pod!=""}',
                "resources": {
                    "overrides": {
                        "namespace": {"resource": "namespace"},
                        "pod": {"resource": "pod"},
                    }
                },
                "name": {"matches": "switchboard_active_calls", "as": "switchboard_active_calls"},
                "metricsQuery": "max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
            }
        ]
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "adapter-config", "namespace": "monitoring"},
        "data": {"config.yaml": yaml.safe_dump(rules, sort_keys=False)},
    }


def service_deployment(d: Deployment, name: str) -> dict[str, Any]:
    assert d.bus_url is not None
    args = ["service", name, "--bus", "$(SWITCHBOARD_BUS_URL)", "--name", "$(POD_NAME)"]
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        _secret_env("SWITCHBOARD_BUS_URL", "bus-url"),
        _secret_env("SWITCHBOARD_REDIS_URL", "redis-url"),
    ]
    if name == "archive":
        env.append(_secret_env("ARCHIVE_DB_URL", "archive-db-url"))
        args += ["--db", "$(ARCHIVE_DB_URL)"]
    # Every service serves /metrics (lag, dead letters, gaps) where Prometheus scrapes it.
    args += ["--host", "0.0.0.0"]
    if name == "analytics":
        port = {"name": "http", "containerPort": ANALYTICS_PORT, "protocol": "TCP"}
    else:
        args += ["--metrics-port", str(SERVICE_METRICS_PORT)]
        port = {"name": "metrics", "containerPort": SERVICE_METRICS_PORT, "protocol": "TCP"}
    if name == "escalation":
        args += [
            "--redis-url",
            "$(SWITCHBOARD_REDIS_URL)",
            "--rules",
            f"{CONFIG_DIR}/escalation.yaml",
        ]
    singular = name in SINGULAR_SERVICES
    if singular:
        args += ["--db", f"{SERVICE_DATA_DIR}/{name}.db"]
    container: dict[str, Any] = {
        "name": name,
        "image": d.image,
        "args": args,
        "ports": [port],
        "env": env,
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
    }
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": 60,
        "securityContext": POD_SECURITY,
        "containers": [container],
    }
    mounts: list[dict[str, Any]] = []
    if name == "escalation":
        # kubectl create configmap switchboard-escalation-rules --from-file=escalation.yaml
        mounts.append({"name": "rules", "mountPath": CONFIG_DIR, "readOnly": True})
        pod["volumes"] = [{"name": "rules", "configMap": {"name": f"{d.name}-escalation-rules"}}]
    if singular:
        mounts.append({"name": "data", "mountPath": SERVICE_DATA_DIR})
    if mounts:
        container["volumeMounts"] = mounts
    spec: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": _labels(d, name)},
        "template": {"metadata": {"labels": _labels(d, name)}, "spec": pod},
    }
    if singular:
        # Exactly one pod, the old one gone before the new one starts (no two writers).
        spec["serviceName"] = f"{d.name}-{name}"
        spec["volumeClaimTemplates"] = [_claim("data", "1Gi")]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet" if singular else "Deployment",
        "metadata": _meta(d, f"{d.name}-{name}", name),
        "spec": spec,
    }


def governing_service(d: Deployment, name: str) -> dict[str, Any]:
    """The headless Service a singular service's StatefulSet names (its pod's DNS)."""
    spec: dict[str, Any] = {"clusterIP": "None", "selector": _labels(d, name)}
    if name == "analytics":
        spec["ports"] = [{"name": "http", "port": ANALYTICS_PORT, "targetPort": "http"}]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(d, f"{d.name}-{name}", name),
        "spec": spec,
    }


def scaled_object(d: Deployment, name: str) -> dict[str, Any]:
    """KEDA: a service scales on its consumer lag (Kafka) or pending entries (Streams)."""
    if d.bus == "kafka":
        trigger: dict[str, Any] = {
            "type": "kafka",
            "metadata": {
                "bootstrapServers": "kafka:9092",
                "consumerGroup": name,
                "topic": "switchboard.events",
                "lagThreshold": "1000",
            },
        }
    else:
        trigger = {
            "type": "redis-streams",
            "metadata": {
                "address": "redis:6379",
                "stream": "switchboard:events",
                "consumerGroup": name,
                "pendingEntriesCount": "1000",
            },
        }
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(d, f"{d.name}-{name}", name),
        "spec": {
            "scaleTargetRef": {"name": f"{d.name}-{name}"},
            "minReplicaCount": 1,
            "maxReplicaCount": 6,
            "triggers": [trigger],
        },
    }


def _docs(*manifests: dict[str, Any]) -> str:
    return "---\n".join(yaml.safe_dump(m, sort_keys=False, width=100) for m in manifests)


def render_kubernetes(d: Deployment) -> dict[str, str]:
    """The files under ``kubernetes/``. ``keda.yaml`` holds KEDA custom resources, which
    no offline schema covers; every other file is core Kubernetes."""
    files = {
        "configmap.yaml": _docs(configmap(d)),
        "deployment.yaml": (REDIS_NOTE if d.shared_state else "") + _docs(node_deployment(d)),
        "service.yaml": _docs(service(d)),
        "pdb.yaml": _docs(pdb(d)),
        "ingress.yaml": _docs(ingress(d)),
    }
    if d.autoscale is not None:
        files["hpa.yaml"] = _docs(hpa(d))
        files["prometheus-adapter.yaml"] = _docs(adapter_rules(d))
    if d.services:
        files["services.yaml"] = _docs(
            *(service_deployment(d, s) for s in d.services),
            *(governing_service(d, s) for s in d.services if s in SINGULAR_SERVICES),
        )
        scaled = [s for s in d.services if s not in SINGULAR_SERVICES]
        if scaled:
            files["keda.yaml"] = _docs(*(scaled_object(d, s) for s in scaled))
    return files
