"""The ``EventBus`` backends, one module each: ``memory``, ``redis`` (Streams), ``kafka``;
``open_bus`` picks one by URL. A backend is imported only when a URL names it, so a node
on Redis Streams never loads the Kafka client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from switchboard.events.bus import EventBus


@dataclass(frozen=True, slots=True)
class BusUrl:
    scheme: str  # memory | redis | kafka
    target: str  # the client's URL or bootstrap servers
    options: dict[str, str]


def parse_bus_url(url: str) -> BusUrl:
    """``memory://``, ``redis://H:P/DB`` (``rediss://`` too), ``kafka://H:P[,H:P]``.
    Query options: Kafka ``topic``, ``partitions``, ``session_timeout_ms``; Redis
    ``stream``, ``maxlen`` (overrides the ``bus_max_len`` setting), ``claim_idle_ms``."""
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "memory":
        return BusUrl("memory", "", options)
    if parts.scheme in ("redis", "rediss"):
        if not parts.netloc:
            raise ValueError(f"bus URL {url!r}: redis needs a host, e.g. redis://127.0.0.1:6379/0")
        return BusUrl("redis", parts._replace(query="").geturl(), options)
    if parts.scheme == "kafka":
        if not parts.netloc:
            raise ValueError(f"bus URL {url!r}: kafka needs brokers, e.g. kafka://127.0.0.1:9092")
        return BusUrl("kafka", parts.netloc, options)
    raise ValueError(f"bus URL {url!r}: use memory://, redis://HOST:PORT/DB or kafka://HOST:PORT")


def open_bus(
    url: str, *, namespace: str = "switchboard:", max_len: int | None = None, **options: Any
) -> EventBus:
    """The backend a URL names. ``namespace`` prefixes Redis keys and the Kafka topic's
    consumer groups stay as given; ``max_len`` caps a Redis stream (``bus_max_len``);
    ``options`` go to the backend (timeouts, tests)."""
    parsed = parse_bus_url(url)
    if parsed.scheme == "memory":
        from switchboard.events.buses.memory import MemoryBus

        return MemoryBus()
    if parsed.scheme == "redis":
        from switchboard.events.buses.redis import RedisStreamBus

        stream = parsed.options.get("stream", "events")
        if max_len is not None:
            options["maxlen"] = max_len
        options |= _ints(parsed.options, "maxlen", "claim_idle_ms")
        return RedisStreamBus(parsed.target, namespace=namespace, stream=stream, **options)
    from switchboard.events.buses.kafka import KafkaBus

    topic = parsed.options.get("topic", "switchboard.events")
    options |= _ints(parsed.options, "partitions", "session_timeout_ms")
    return KafkaBus(parsed.target, topic=topic, **options)


def _ints(options: dict[str, str], *names: str) -> dict[str, int]:
    out = {}
    for name in names:
        if name in options:
            try:
                out[name] = int(options[name])
            except ValueError:
                raise ValueError(
                    f"bus URL option {name}={options[name]!r} is not a number"
                ) from None
    return out
