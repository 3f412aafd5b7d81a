"""``write_atomically``: readers of a rewritten file see the old file or the new one."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from switchboard.atomic_file import write_atomically

OLD = b"a" * 200_000
NEW = b"b" * 200_000


def test_writes_bytes_and_text_and_creates_the_directory(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "run.json"
    write_atomically(target, b"{}")
    assert target.read_bytes() == b"{}"
    write_atomically(target, "caf\u00e9")
    assert target.read_bytes() == "caf\u00e9".encode()
    assert [p.name for p in target.parent.iterdir()] == ["run.json"]


def test_a_reader_never_sees_half_a_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomically(target, OLD)
    done = threading.Event()
    seen: set[bytes] = set()

    def rewrite() -> None:
        try:
            for i in range(200):
                write_atomically(target, NEW if i % 2 else OLD)
        finally:
            done.set()

    writer = threading.Thread(target=rewrite)
    writer.start()
    while not done.is_set():
        data = target.read_bytes()
        assert data in (OLD, NEW), f"a reader saw {len(data)} bytes"
        seen.add(data)
    writer.join()
    assert seen


def test_two_writers_of_one_file_never_share_a_temporary(tmp_path: Path) -> None:
    target = tmp_path / "offset"
    errors: list[BaseException] = []

    def rewrite(data: bytes) -> None:
        try:
            for _ in range(200):
                write_atomically(target, data)
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=rewrite, args=(d,)) for d in (OLD, NEW)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    assert errors == []
    assert target.read_bytes() in (OLD, NEW)
    assert [p.name for p in tmp_path.iterdir()] == ["offset"]


def test_a_failed_write_leaves_the_target_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.mkdir()
    (target / "keep").write_text("x")  # a non-empty directory cannot be replaced by a file
    with pytest.raises(IsADirectoryError):
        write_atomically(target, b"<html>")
    assert (target / "keep").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
