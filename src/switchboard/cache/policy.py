"""What an agent file asks of the cache (its ``cache:`` section), with per-agent defaults.

```yaml
cache:
  enabled: true        # default: on for agent: openai, off for the scripted agent
  exact: true
  semantic: true       # default: on for agent: openai, when the semantic-cache extra is in
  threshold: 0.85      # cosine similarity a semantic candidate must reach
  ttl_s: 3600          # default: settings.cache_ttl_s
  wait_ms: 1500        # how long concurrent misses wait for the first one (single-flight)
  warm: [lines...]     # caller lines the server answers into the cache at startup
```

The semantic tier needs the ``semantic-cache`` extra. A default never asks for a missing
extra: without it, an openai agent's default is the exact tier alone; a file that says
``semantic: true`` gets the one line naming the extra when the server starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import msgspec

from switchboard import extras
from switchboard.agents.agent_file import AgentFileError, read_agent_file

DEFAULT_THRESHOLD = 0.85
#: Agents whose replies are slow enough to be worth caching by default.
CACHED_BY_DEFAULT = frozenset({"openai"})


class CachePolicy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    enabled: bool = True
    exact: bool = True
    semantic: bool = False
    threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] = DEFAULT_THRESHOLD
    ttl_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    wait_ms: Annotated[float, msgspec.Meta(ge=0)] = 1500.0
    warm: list[str] = msgspec.field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.enabled and (self.exact or self.semantic)


def policy_from_spec(spec: dict[str, Any], path: Path | None = None) -> CachePolicy:
    """The policy of a parsed agent file; the agent kind sets the defaults."""
    kind = spec.get("agent", "scripted")
    default_on = kind in CACHED_BY_DEFAULT
    section = spec.get("cache")
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise AgentFileError(path, "cache", "must be a mapping (enabled, exact, semantic, ...)")
    semantic = default_on and extras.installed("onnxruntime")
    merged = {"enabled": default_on, "semantic": semantic, **section}
    try:
        return msgspec.convert(merged, CachePolicy)
    except msgspec.ValidationError as exc:
        error = AgentFileError.from_validation(path, exc)
        field = f"cache.{error.field}" if error.field else "cache"
        raise AgentFileError(path, field, error.reason) from None


def read_policy(path: Path) -> CachePolicy:
    return policy_from_spec(read_agent_file(path), path)
