"""Settings: TOML file < SWITCHBOARD_* environment < explicit overrides; typos fail loudly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from switchboard.config import (
    ConfigError,
    Settings,
    builtin_example,
    load_settings,
    unknown_environment,
)


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
    with pytest.raises(ConfigError, match=r"unknown setting 'max_call'.*did you mean 'max_calls'"):
        load_settings(config)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_a_misspelt_variable_is_an_error_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWITCHBOARD_DRAIN_TIMEOUT", "3")
    monkeypatch.setenv("SWITCHBOARD_MAX_CALL", "3")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value).splitlines() == [
        "unknown setting SWITCHBOARD_DRAIN_TIMEOUT; did you mean SWITCHBOARD_DRAIN_TIMEOUT_S?",
        "unknown setting SWITCHBOARD_MAX_CALL; did you mean SWITCHBOARD_MAX_CALLS?",
    ]


def test_an_unrelated_variable_is_only_reported() -> None:
    env = {
        "SWITCHBOARD_DEPLOY_COLOUR": "blue",
        "SWITCHBOARD_OPENAI_MODEL": "gpt",  # read by the OpenAI agent, not a setting
        "SWITCHBOARD_PORT": "1",
        "HOME": "/",
    }
    assert unknown_environment(env) == [("SWITCHBOARD_DEPLOY_COLOUR", None)]


def test_a_bad_value_is_one_line_naming_setting_and_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWITCHBOARD_MAX_CALLS", "lots")
    monkeypatch.setenv("SWITCHBOARD_RETELL_API_KEY", "k")
    with pytest.raises(ConfigError) as err:
        load_settings(port="eighty")
    lines = str(err.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("port (SWITCHBOARD_PORT): Input should be a valid integer")
    assert lines[1].endswith("got 'lots'")


def serve_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard", "serve", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {"SWITCHBOARD_DRAIN_TIMEOUT": "1"}, "did you mean SWITCHBOARD_DRAIN_TIMEOUT_S?"),
        ((), {"SWITCHBOARD_MAX_CALLS": "x"}, "max_calls (SWITCHBOARD_MAX_CALLS)"),
        ((), {"SWITCHBOARD_LOG_LEVEL": "loud"}, "unknown log level 'loud'"),
        (("--agent-file", "missing.yaml"), {}, "missing.yaml: file not found"),
    ],
)
@pytest.mark.integration
def test_serve_reports_a_configuration_error_in_a_line_or_two(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    done = serve_cli(*args, **env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) <= 3, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_serve_help_shows_the_defaults_of_its_flags() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    defaults = Settings.model_fields
    assert f"(default: {defaults['port'].default})" in done.stdout
    assert f"(default: {defaults['host'].default})" in done.stdout
    assert f"(default: {defaults['profile'].default})" in done.stdout


@pytest.mark.integration
def test_version() -> None:
    from switchboard import __version__

    done = subprocess.run(
        [sys.executable, "-m", "switchboard", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == f"switchboard {__version__}"


def test_profiles_carry_their_latency_budgets() -> None:
    assert load_settings(profile="distributed").budget_ms == 500
    assert load_settings(profile="event-driven").budget_ms == 300
