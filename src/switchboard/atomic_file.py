"""Rewriting a file that another process may read at any moment.

Reports, bench results, the cluster's state file and the outbox's replay offset are read
while they are rewritten: a browser refreshing a report, ``switchboard chaos`` polling the
cluster's state, a restarted node reading its offset. Writing in place would let such a
reader see half a file. ``write_atomically`` writes a temporary file beside the target and
renames it over the target, which POSIX makes atomic: a reader sees the old file or the
new one, never a mix.

The temporary name is unique per call, so two writers of one file never write into the
same temporary, and it is removed when the write fails (a full disk leaves no debris).
There is no fsync: every file written here can be rebuilt or re-sent (a lost offset
replays one batch, which consumers dedupe), and an fsync per write would cost the outbox
a disk flush per replayed batch.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomically(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8), creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
