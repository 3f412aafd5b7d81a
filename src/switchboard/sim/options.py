"""Everything a simulator run can be told: the knobs of ``switchboard simulate``.

Retell's own numbers (3 connect attempts, 7 s open timeout, 3 s apart; pings every 2 s,
5 s without a pong; 4 reconnects after 1006, 2 after keepalive loss) are the defaults.
They are fields rather than constants so tests can shrink them and stay fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from switchboard.config import BUDGET_MS


@dataclass(slots=True)
class SimOptions:
    url: str
    #: Random callers; ``None``: 10 without a scenario, none with one.
    calls: int | None = None
    turns: int = 5
    think_ms: float = 250.0
    word_ms: float = 0.0
    ramp_ms: float = 0.0
    barge_in_rate: float = 0.0
    reminder_rate: float = 0.0
    scenario: Path | None = None
    #: Run for this many seconds, each simulated caller placing call after call;
    #: ``None`` places exactly ``calls`` calls.
    duration_s: float | None = None
    profile: str | None = None
    budget_ms: float | None = None
    stale_grace_ms: float = 25.0
    seed: int | None = None
    label: str = ""

    # Retell's connection behaviour (spec 1.9).
    connect_attempts: int = 3
    open_timeout_s: float = 7.0
    connect_retry_delay_s: float = 3.0
    ping_interval_s: float = 2.0
    pong_timeout_s: float = 5.0
    max_abnormal_reconnects: int = 4
    max_keepalive_reconnects: int = 2
    close_timeout_s: float = 2.0

    # Simulator deadlines: Retell has none per turn (1.9); a test of a server needs one.
    begin_timeout_s: float = 10.0
    turn_timeout_s: float = 10.0

    max_frame_bytes: int = 1 << 20
    violation_samples: int = 5
    lag_interval_s: float = 0.05

    def __post_init__(self) -> None:
        if not self.url.startswith(("ws://", "wss://", "http://", "https://")):
            raise ValueError(f"url must be ws://, wss://, http:// or https://, got {self.url!r}")
        if self.profile is not None and self.profile not in BUDGET_MS:
            raise ValueError(f"profile must be one of {', '.join(BUDGET_MS)}, got {self.profile!r}")
        for name in ("barge_in_rate", "reminder_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.calls is not None and self.calls < 0:
            raise ValueError("calls must not be negative")
        if self.turns < 0:
            raise ValueError("turns must not be negative")
        if self.connect_attempts < 1:
            raise ValueError("connect_attempts must be at least 1")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration must be positive")
        for name in ("think_ms", "word_ms", "ramp_ms", "stale_grace_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    @property
    def base_url(self) -> str:
        """The configured URL as Retell uses it: ws(s) scheme, no trailing slash (spec 1.1)."""
        url = self.url.rstrip("/")
        if url.startswith("https://"):
            return "wss://" + url[len("https://") :]
        if url.startswith("http://"):
            return "ws://" + url[len("http://") :]
        return url

    @property
    def effective_budget_ms(self) -> float:
        if self.budget_ms is not None:
            return self.budget_ms
        return float(BUDGET_MS[self.profile or "single"])

    def as_report_dict(self) -> dict[str, object]:
        """The options as recorded in the report (JSON-friendly). Unset options are left
        out; the budget actually applied is recorded as ``budget_ms``."""
        out: dict[str, object] = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            out[key] = str(value) if isinstance(value, Path) else value
        out["budget_ms"] = self.effective_budget_ms
        return out
