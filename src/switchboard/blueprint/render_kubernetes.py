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
- KEDA scales the services on their consumer lag, the work actually waiting for them.

Secrets are referenced by name (``switchboard-secrets``), never written.
"""

from __future__ import annotations

from typing import Any

import yaml

from switchboard.blueprint.model import PRESTOP_SLEEP_S, Deployment
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
    container = {
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
    spec: dict[str, Any] = {
        "selector": {"matchLabels": _labels(d, "node")},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": {
            "metadata": {"labels": _labels(d, "node")},
            "spec": {
                "terminationGracePeriodSeconds": d.grace_period_s,
                "containers": [container],
                "volumes": [{"name": "config", "configMap": {"name": f"{d.name}-config"}}],
            },
        },
    }
    if d.autoscale is None:
        spec["replicas"] = d.nodes
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(d, d.name, "node"),
        "spec": spec,
    }


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
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": d.name},
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
    if name == "analytics":
        args += ["--host", "0.0.0.0"]
    if name == "escalation":
        args += [
            "--redis-url",
            "$(SWITCHBOARD_REDIS_URL)",
            "--rules",
            f"{CONFIG_DIR}/escalation.yaml",
        ]
    container: dict[str, Any] = {
        "name": name,
        "image": d.image,
        "args": args,
        "env": env,
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
    }
    pod: dict[str, Any] = {"terminationGracePeriodSeconds": 60, "containers": [container]}
    if name == "escalation":
        # kubectl create configmap switchboard-escalation-rules --from-file=escalation.yaml
        container["volumeMounts"] = [{"name": "rules", "mountPath": CONFIG_DIR, "readOnly": True}]
        pod["volumes"] = [{"name": "rules", "configMap": {"name": f"{d.name}-escalation-rules"}}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(d, f"{d.name}-{name}", name),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": _labels(d, name)},
            "template": {"metadata": {"labels": _labels(d, name)}, "spec": pod},
        },
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
        files["services.yaml"] = _docs(*(service_deployment(d, s) for s in d.services))
        files["keda.yaml"] = _docs(*(scaled_object(d, s) for s in d.services))
    return files
