"""Settings: a TOML file (``--config``) overlaid by ``SWITCHBOARD_*`` environment variables.

Precedence, highest first: explicit overrides (CLI flags), environment, TOML file,
defaults. The profile alone picks the architecture; see ``docs/profiles.md``.

Typos are loud. An unknown key in the file is an error; so is a ``SWITCHBOARD_*``
variable that is a near miss of a setting (``SWITCHBOARD_DRAIN_TIMEOUT``). Other unknown
``SWITCHBOARD_*`` variables may be read elsewhere (an agent file, the test suite): they
are reported by ``unknown_environment`` for the server to warn about. Every problem
surfaces as one ``ConfigError`` whose message is a few lines, not a traceback.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

Profile = Literal["single", "distributed", "event-driven"]

#: Latency budget (request -> first chunk heard) per profile, from the seed decision matrix.
BUDGET_MS: dict[str, int] = {"single": 800, "distributed": 500, "event-driven": 300}


def builtin_example(name: str) -> Path:
    """Path of an agent file shipped with the package (``examples/`` in the repo)."""
    return Path(str(resources.files("switchboard") / "examples" / name))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="forbid")

    profile: Profile = "single"
    host: str = "127.0.0.1"
    port: int = 8080
    agent_file: Path = Field(default_factory=lambda: builtin_example("receptionist.yaml"))
    node_id: str = ""

    # What we ask of Retell in the ``config`` frame sent first on every socket.
    auto_reconnect: bool = True
    call_details: bool = True
    transcript_with_tool_calls: bool = False

    # Turn handling.
    first_chunk_timeout_ms: int = Field(default=2500, gt=0)
    turn_timeout_s: float = Field(default=60.0, gt=0)
    call_details_timeout_ms: int = Field(default=2000, gt=0)
    fallback_text: str = "Sorry, I'm having a little trouble. Could you say that again?"

    # Admission and protection.
    max_calls: int = Field(default=100, ge=1)
    max_frame_bytes: int = Field(default=1 << 20, ge=1024)
    url_secret: SecretStr | None = None
    allowed_ips: list[str] = Field(default_factory=list)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    #: A client must send its request line and headers within this (slowloris guard).
    header_timeout_s: float = Field(default=10.0, gt=0)
    #: A call socket silent this long gets a WebSocket ping, and is closed (1011) if it
    #: stays silent as long again. Retell's own pings every 2 s keep live calls busy.
    socket_idle_s: float = Field(default=20.0, gt=0)

    # State. ``redis_url`` is required by the shared-state profiles and ignored by ``single``.
    state_ttl_s: float = Field(default=3600.0, gt=0)
    redis_url: str | None = None
    #: Prefix of every key and channel switchboard uses, so one Redis can serve several
    #: deployments (or a test suite) without collisions.
    redis_namespace: str = "switchboard:"
    #: Per-command deadline. A dead link costs a call at most this much, off the response
    #: path; redis-py's default retries would turn it into many seconds.
    redis_timeout_ms: int = Field(default=250, gt=0)
    #: How often a node refreshes its entry in the live-call directory; it counts as dead
    #: (its calls orphaned) after three missed beats.
    heartbeat_ms: int = Field(default=1000, gt=0)
    #: How long a claim or a turn's save waits for an unreachable store before the call
    #: goes on without it (a claim: served without its state; a save: held, and
    #: ``content_complete`` sent). Covers a Redis restart or failover blip.
    state_wait_ms: int = Field(default=1500, ge=0)
    #: At shutdown, how long the node waits for state saves still under way (in flight,
    #: or held for a store outage) before it exits.
    drain_save_timeout_s: float = Field(default=5.0, ge=0)

    # Events. With ``bus_url`` (memory://, redis://H:P/DB, kafka://H:P) the node publishes
    # call events through an outbox that spills to ``outbox_dir`` while the bus is down
    # (docs/outbox.md). Default dir: per ``node_id`` under the temp dir, so give nodes a
    # stable ``node_id`` (or their own ``outbox_dir``) to replay spills after a restart.
    bus_url: str | None = None
    #: Redis Streams only: entries (each up to 100 events) the stream keeps before the
    #: sender trims what every consumer group has acked. Never trims unacked entries: a
    #: lagging group makes the stream grow past this instead (docs/event-bus.md).
    bus_max_len: int = Field(default=100_000, ge=1)
    outbox_dir: Path | None = None
    outbox_capacity: int = Field(default=10_000, ge=1)
    outbox_fsync: Literal["batch", "never"] = "batch"
    #: the spill file's byte cap: past it new events are dropped, counted and logged
    outbox_spill_max_bytes: int = Field(default=1 << 30, ge=1024)
    #: an encoded event above this is parked, never sent (Kafka clients refuse 1 MiB)
    outbox_max_event_bytes: int = Field(default=512 * 1024, ge=1024)
    #: a bus send still in flight after this long sends the waiting events to the spill file
    outbox_stall_s: float = Field(default=0.5, gt=0)

    # Response cache (docs/cache.md): ``auto`` follows the profile (single: memory, the
    # shared-state profiles: Redis at ``redis_url``); the agent file's ``cache:`` section
    # says whether and how an agent uses it.
    cache: Literal["auto", "off", "memory", "redis"] = "auto"
    cache_ttl_s: float = Field(default=3600.0, gt=0)
    #: Deadline of one cache command: past it the turn is a miss, never a wait.
    cache_timeout_ms: float = Field(default=5.0, gt=0)

    # Webhooks.
    retell_api_key: SecretStr | None = None
    webhook_tolerance_ms: int = 300_000
    webhook_max_body_bytes: int = Field(default=1 << 20, ge=1024)
    #: Retell gives up after 10 s: a body that takes longer to arrive is not Retell's.
    webhook_body_timeout_s: float = Field(default=10.0, gt=0)
    #: Bodies read at once before their signature can be checked; more get 503.
    webhook_max_pending_bodies: int = Field(default=64, ge=1)

    log_level: str = "info"
    log_json: bool = False

    @property
    def budget_ms(self) -> int:
        return BUDGET_MS[self.profile]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # ``toml_file`` is set only on the per-load subclass made by ``load_settings``.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


ENV_PREFIX = "SWITCHBOARD_"
#: ``SWITCHBOARD_*`` variables that are not settings but are read elsewhere.
OTHER_VARIABLES = frozenset(
    {
        "SWITCHBOARD_OPENAI_MODEL",
        "SWITCHBOARD_TEST_REDIS_URL",
        # the escalation service's options (``switchboard service escalation``)
        "SWITCHBOARD_ESCALATION_STALE_AFTER_S",
        "SWITCHBOARD_ESCALATION_MAX_PENDING_S",
    }
)


def uses_redis(settings: Settings) -> bool:
    """Whether the profile keeps call state in Redis (every profile but ``single``)."""
    return settings.profile != "single"


class ConfigError(ValueError):
    """Settings that cannot be used; the message says which and why, in a few lines."""


def unknown_environment(
    environ: Mapping[str, str] | None = None,
) -> list[tuple[str, str | None]]:
    """``SWITCHBOARD_*`` variables that name no setting: ``(name, closest setting or None)``."""
    env = os.environ if environ is None else environ
    known = [ENV_PREFIX + name.upper() for name in Settings.model_fields]
    found = []
    for name in sorted(env):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper in OTHER_VARIABLES:
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.8)
        found.append((name, close[0] if close else None))
    return found


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from an optional TOML file, the environment and explicit overrides."""
    typos = [(name, close) for name, close in unknown_environment() if close is not None]
    if typos:
        raise ConfigError(
            "\n".join(f"unknown setting {name}; did you mean {close}?" for name, close in typos)
        )
    cls: type[Settings] = Settings
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file not found: {config_file}")
        config = SettingsConfigDict(**{**Settings.model_config, "toml_file": config_file})
        cls = type("FileSettings", (Settings,), {"model_config": config})
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        raise ConfigError(describe(err, config_file)) from None


def describe(err: ValidationError, config_file: Path | None = None) -> str:
    """One line per problem: the setting, what is wrong, what was given."""
    names = list(Settings.model_fields)
    lines = []
    for problem in err.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "settings"
        if problem["type"] == "extra_forbidden":
            close = difflib.get_close_matches(field, names, n=1, cutoff=0.6)
            where = f" in {config_file}" if config_file is not None else ""
            hint = f"; did you mean {close[0]!r}?" if close else ""
            lines.append(f"unknown setting {field!r}{where}{hint}")
            continue
        given = problem.get("input")
        shown = repr(given) if isinstance(given, (str, int, float, bool)) else type(given).__name__
        if "secret" in field or "key" in field:
            shown = "(hidden)"
        env = ENV_PREFIX + field.upper()
        lines.append(f"{field} ({env}): {problem['msg']}, got {shown[:60]}")
    return "\n".join(lines)
