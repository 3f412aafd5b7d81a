"""Settings: TOML file < SWITCHBOARD_* environment < explicit overrides; typos fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from switchboard.config import builtin_example, load_settings


def test_defaults_are_the_single_profile_and_the_receptionist() -> None:
    settings = load_settings()
    assert settings.profile == "single"
    assert settings.budget_ms == 800
    assert settings.agent_file == builtin_example("receptionist.yaml")
    assert settings.agent_file.is_file()


def test_environment_beats_the_file_and_overrides_beat_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "switchboard.toml"
    config.write_text('port = 9000\nmax_calls = 5\nallowed_ips = ["10.0.0.0/8"]\n')
    monkeypatch.setenv("SWITCHBOARD_MAX_CALLS", "7")
    monkeypatch.setenv("SWITCHBOARD_URL_SECRET", "from-env")
    settings = load_settings(config, port=9100)
    assert settings.port == 9100
    assert settings.max_calls == 7
    assert settings.allowed_ips == ["10.0.0.0/8"]
    assert settings.url_secret is not None
    assert settings.url_secret.get_secret_value() == "from-env"
    assert "from-env" not in repr(settings)


def test_a_typo_in_the_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "switchboard.toml"
    config.write_text("max_call = 5\n")
    with pytest.raises(ValidationError, match="max_call"):
        load_settings(config)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "nope.toml")


def test_profiles_carry_their_latency_budgets() -> None:
    assert load_settings(profile="distributed").budget_ms == 500
    assert load_settings(profile="event-driven").budget_ms == 300
