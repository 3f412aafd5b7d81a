"""The outbox's spill file: an append-only log of bus messages on local disk.

Records are ``[u32 length][msgpack BusMessage]``. A sidecar file holds the byte offset
already replayed to the bus, written after each replayed batch, so a restart resumes
where the last run stopped (a crash between a send and the offset write re-sends one
batch: at least once, consumers dedupe by event id). When everything is replayed the
log is truncated to zero. A record cut short by a crash mid-write is dropped with a
warning; everything before it is kept.

One process per directory: an exclusive ``flock`` on the log refuses a second owner
with a clear error instead of interleaving two nodes' records.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Iterable
from pathlib import Path

import msgspec

from switchboard.events.codec import BusMessage
from switchboard.log import get_logger

_log = get_logger("switchboard.events.spill")
_LEN = struct.Struct(">I")
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(BusMessage)


class SpillLocked(RuntimeError):
    """Another process owns this spill directory."""


class SpillFile:
    LOG = "outbox.spill"
    OFFSET = "outbox.offset"

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / self.LOG
        self._offset_path = directory / self.OFFSET
        self._file = self.path.open("ab+")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise SpillLocked(
                f"{directory} is in use by another process; give each node its own outbox dir"
            ) from None
        self.offset = self._read_offset()
        self.size = self._file.seek(0, os.SEEK_END)
        self.records = 0  # appended by this process and not yet replayed (for metrics)
        if self.offset > self.size:
            self.offset = 0

    def _read_offset(self) -> int:
        try:
            return int(self._offset_path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    @property
    def pending(self) -> bool:
        return self.offset < self.size

    def append(self, messages: Iterable[BusMessage]) -> int:
        """Buffered append, flushed to the OS (survives a killed process, not a power cut
        until ``sync``). Returns how many were written."""
        parts = []
        for message in messages:
            body = _encoder.encode(message)
            parts.append(_LEN.pack(len(body)))
            parts.append(body)
        if not parts:
            return 0
        data = b"".join(parts)
        self._file.seek(0, os.SEEK_END)
        self._file.write(data)
        self._file.flush()
        self.size += len(data)
        count = len(parts) // 2
        self.records += count
        return count

    def sync(self) -> None:
        """fsync; blocking, so callers run it in a thread."""
        os.fsync(self._file.fileno())

    def read(self, max_messages: int, max_bytes: int = 1 << 20) -> tuple[list[BusMessage], int]:
        """The next messages after ``offset`` and the offset just past them."""
        self._file.seek(self.offset)
        data = self._file.read(min(max_bytes, self.size - self.offset))
        messages: list[BusMessage] = []
        pos = 0
        while len(messages) < max_messages:
            if self.offset + pos + 4 > self.size:
                if self.offset + pos < self.size:
                    self._drop_torn_tail(self.offset + pos)
                break
            if pos + 4 > len(data):
                break  # the rest comes with the next read
            (length,) = _LEN.unpack_from(data, pos)
            end = pos + 4 + length
            if self.offset + end > self.size:
                self._drop_torn_tail(self.offset + pos)
                break
            if end > len(data):
                if pos > 0:
                    break
                data += self._file.read(end - len(data))  # one record above max_bytes
            try:
                messages.append(_decoder.decode(data[pos + 4 : end]))
            except msgspec.DecodeError:
                _log.error("unreadable record in the spill file; skipped", offset=self.offset + pos)
            pos = end
        return messages, self.offset + pos

    def _drop_torn_tail(self, at: int) -> None:
        _log.warning("spill file ends in a cut-short record; dropped it", offset=at)
        self._file.truncate(at)
        self.size = at

    def commit(self, offset: int) -> None:
        """Everything before ``offset`` is on the bus. Truncates once all of it is."""
        self.offset = offset
        if offset >= self.size:
            self._file.truncate(0)
            self.size = self.offset = 0
            self.records = 0
            self._offset_path.unlink(missing_ok=True)
            return
        tmp = self._offset_path.with_suffix(".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, self._offset_path)

    def close(self) -> None:
        self._file.close()
