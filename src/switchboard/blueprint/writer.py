"""Writing a blueprint: all of it or nothing.

The files are checked first (the settings load, every YAML parses), then written into a
fresh sibling directory and renamed into place, so a reader never sees half a blueprint
and a failure leaves the old directory as it was. An existing directory is replaced only
with ``force``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import yaml

from switchboard.blueprint.render_settings import SETTINGS_FILE


class OutputError(ValueError):
    """The output directory cannot take the blueprint: one line, exit 2."""


def check_files(files: dict[str, str]) -> None:
    """Raise ``ValueError`` if a settings file does not load or a YAML file does not parse."""
    from switchboard.config import load_settings

    for name, text in files.items():
        if name.endswith((".yml", ".yaml")):
            try:
                list(yaml.safe_load_all(text))
            except yaml.YAMLError as exc:
                raise ValueError(f"{name} is not valid YAML: {exc}") from None
    if SETTINGS_FILE in files:
        with tempfile.TemporaryDirectory(prefix="switchboard-check-") as tmp:
            path = Path(tmp) / SETTINGS_FILE
            path.write_text(files[SETTINGS_FILE])
            load_settings(path)


def preflight(out: Path, force: bool) -> None:
    """Refuse before any work: an existing directory without ``force``, an unwritable parent."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a directory")
    if out.exists() and not force:
        raise OutputError(f"{out} already exists; pass --force to replace it")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {out}: {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {out}: {parent} is not writable")


def write_blueprint(files: dict[str, str], out: Path, *, force: bool = False) -> list[Path]:
    """Write ``files`` under ``out`` atomically; the paths written, sorted."""
    preflight(out, force)
    check_files(files)
    parent = out.resolve().parent
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    old: Path | None = None
    try:
        for name, text in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        os.chmod(staging, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            os.rename(out, old / "previous")
        os.rename(staging, out)
    except OSError as exc:
        if old is not None and (old / "previous").exists() and not out.exists():
            os.rename(old / "previous", out)
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return sorted(out / name for name in files)
