"""The outbox's spill file: an append-only log of bus messages on local disk.

Each record is framed ``[magic 4][u32 length][u32 crc32][msgpack BusMessage]``; the
checksum covers the length and the body. A reader that finds anything but a valid
record where one should start (a flipped byte, a bad length, an offset pointing into
the middle of a record) scans forward for the next magic whose record checks out and
goes on from there: one bad record costs that record, never the ones after it. Each
such skip is counted (``corrupt``) and logged at error level.

A sidecar file holds the byte offset already replayed to the bus, written after each
replayed batch, so a restart resumes where the last run stopped (a crash between a send
and the offset write re-sends one batch: at least once, consumers dedupe by event id).
When everything is replayed the log is truncated to zero.

Writes are all or nothing per call: a write the disk refuses (full, a file size limit)
is cut back to the last whole record and reported as ``SpillFull``; so is a write that
would take the file past ``max_bytes``. The caller decides what to drop.

One process per directory: an exclusive ``flock`` on the log refuses a second owner
with a clear error instead of interleaving two nodes' records.
"""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

from switchboard.atomic_file import write_atomically
from switchboard.events.codec import BusMessage
from switchboard.log import get_logger

_log = get_logger("switchboard.events.spill")

MAGIC = b"\xa5SB\x01"
_HEADER = struct.Struct(">4sII")  # magic, body length, crc32(length + body)
HEADER_BYTES = _HEADER.size
_LEN = struct.Struct(">I")
#: no record is larger (the outbox parks bigger events): a length above it is corruption
MAX_RECORD_BYTES = 64 << 20
_SCAN_CHUNK = 1 << 20
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(BusMessage)


class SpillLocked(RuntimeError):
    """Another process owns this spill directory."""


class SpillFull(OSError):
    """The write did not fit (byte cap, full disk, file size limit); ``written`` records
    of the call made it (whole), the rest did not."""

    def __init__(self, reason: str, written: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.written = written


def frame(body: bytes) -> bytes:
    """One record around ``body``."""
    length = _LEN.pack(len(body))
    return _HEADER.pack(MAGIC, len(body), zlib.crc32(body, zlib.crc32(length))) + body


def check(header: bytes, body: bytes) -> bool:
    """Whether ``body`` is what ``header`` promises."""
    magic, length, crc = _HEADER.unpack(header)
    return bool(
        magic == MAGIC
        and length == len(body)
        and zlib.crc32(body, zlib.crc32(_LEN.pack(length))) == crc
    )


def records(data: bytes) -> Iterator[bytes]:
    """Every valid record body in ``data``, skipping damage (for small logs read whole)."""
    pos = 0
    while True:
        pos = data.find(MAGIC, pos)
        if pos < 0 or pos + HEADER_BYTES > len(data):
            return
        _, length, _ = _HEADER.unpack_from(data, pos)
        end = pos + HEADER_BYTES + length
        if end <= len(data) and check(
            data[pos : pos + HEADER_BYTES], data[pos + HEADER_BYTES : end]
        ):
            yield data[pos + HEADER_BYTES : end]
            pos = end
        else:
            pos += 1


class AppendLog:
    """An ``O_APPEND`` file of framed records with a byte cap; the shell both the spill
    file and the parked-events file use."""

    def __init__(self, path: Path, *, max_bytes: int | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = os.fstat(self.fd).st_size

    def append(self, bodies: Sequence[bytes]) -> int:
        """Append whole records; ``SpillFull`` if not all of them fit (those that did stay)."""
        if not bodies:
            return 0
        frames = [frame(body) for body in bodies]
        count = len(frames)
        room = None if self.max_bytes is None else self.max_bytes - self.size
        reason = "cap"
        if room is not None:
            total = 0
            for i, f in enumerate(frames):
                total += len(f)
                if total > room:
                    count = i
                    break
        data = b"".join(frames[:count])
        try:
            self._write(data)
        except OSError as err:
            os.ftruncate(self.fd, self.size)  # cut back to the last whole record
            written = self._append_each(frames[:count]) if count > 1 else 0
            raise SpillFull(f"{type(err).__name__}: {err}", written) from err
        self.size += len(data)
        if count < len(frames):
            raise SpillFull(reason, count)
        return count

    def _append_each(self, frames: list[bytes]) -> int:
        """After a refused write: as many whole records as the disk still takes."""
        for written, f in enumerate(frames):
            try:
                self._write(f)
            except OSError:
                os.ftruncate(self.fd, self.size)
                return written
            self.size += len(f)
        return len(frames)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def sync(self) -> None:
        """fsync; blocking, so callers run it in a thread."""
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class SpillFile:
    LOG = "outbox.spill"
    OFFSET = "outbox.offset"

    def __init__(self, directory: Path, *, max_bytes: int | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._log = AppendLog(directory / self.LOG, max_bytes=max_bytes)
        self.path = self._log.path
        try:
            fcntl.flock(self._log.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._log.close()
            raise SpillLocked(
                f"{directory} is in use by another process; give each node its own outbox dir"
            ) from None
        self._offset_path = directory / self.OFFSET
        self.offset = self._read_offset()
        self.records = 0  # appended by this process and not yet replayed (for metrics)
        #: damaged stretches skipped on replay since this process started (each >= 1 record)
        self.corrupt = 0
        if self.offset > self.size:
            self.offset = 0
        if self.size and os.pread(self._log.fd, len(MAGIC), 0) != MAGIC:
            self._upgrade_legacy()

    def _upgrade_legacy(self) -> None:
        """A file from a build before checksums (``[u32 length][body]`` records): frame
        what is still pending and replay that, so an upgrade during an outage loses
        nothing. Runs once, under the lock."""
        fd, size = self._log.fd, self._log.size
        bodies: list[bytes] = []
        pos = self.offset
        while pos + _LEN.size <= size:
            (length,) = _LEN.unpack(os.pread(fd, _LEN.size, pos))
            if length > MAX_RECORD_BYTES or pos + _LEN.size + length > size:
                break
            bodies.append(os.pread(fd, length, pos + _LEN.size))
            pos += _LEN.size + length
        if pos < size:
            self._report(pos, size - pos, "unreadable tail of a spill file from an older build")
        os.ftruncate(fd, 0)
        self._log.size = self.offset = 0
        self._offset_path.unlink(missing_ok=True)
        self._log.append(bodies)
        self._log.sync()
        _log.warning("spill file from an older build re-framed", records=len(bodies))

    @property
    def size(self) -> int:
        return self._log.size

    def _read_offset(self) -> int:
        try:
            return int(self._offset_path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    @property
    def pending(self) -> bool:
        return self.offset < self._log.size

    def append(self, messages: Sequence[BusMessage]) -> int:
        """Append whole records, unbuffered (so a killed process loses none of them; a
        power cut may, until ``sync``). Returns how many were written; ``SpillFull`` when
        not all fitted."""
        try:
            count = self._log.append([_encoder.encode(m) for m in messages])
        except SpillFull as full:
            self.records += full.written
            raise
        self.records += count
        return count

    def sync(self) -> None:
        self._log.sync()

    def read(self, max_messages: int, max_bytes: int = 1 << 20) -> tuple[list[BusMessage], int]:
        """The next messages after ``offset`` and the offset just past them. Damage ends
        the batch early; the returned offset then points past it."""
        fd, size = self._log.fd, self._log.size
        start = self.offset
        data = os.pread(fd, min(max_bytes, size - start), start)
        messages: list[BusMessage] = []
        pos = 0
        while len(messages) < max_messages and start + pos < size:
            if pos + HEADER_BYTES > len(data):
                if start + pos + HEADER_BYTES > size:
                    return messages, self._skip_damage(start + pos)
                break  # the rest comes with the next read
            magic, length, _ = _HEADER.unpack_from(data, pos)
            end = pos + HEADER_BYTES + length
            if magic != MAGIC or length > MAX_RECORD_BYTES or start + end > size:
                return messages, self._skip_damage(start + pos)
            if end > len(data):
                if pos > 0:
                    break
                data += os.pread(fd, end - len(data), start + len(data))  # one big record
            body = data[pos + HEADER_BYTES : end]
            if not check(data[pos : pos + HEADER_BYTES], body):
                return messages, self._skip_damage(start + pos)
            try:
                messages.append(_decoder.decode(body))
            except msgspec.DecodeError:
                self._report(start + pos, end - pos, "record does not decode")
            pos = end
        return messages, start + pos

    def _skip_damage(self, at: int) -> int:
        """Where the next valid record after ``at`` starts (the end of the file if none)."""
        found = self._next_record(at + 1)
        resume = self._log.size if found is None else found
        self._report(at, resume - at, "bad record")
        return resume

    def _report(self, at: int, length: int, what: str) -> None:
        self.corrupt += 1
        _log.error(
            "damaged spill record skipped; the events in it are lost",
            what=what,
            offset=at,
            bytes=length,
            corrupt_total=self.corrupt,
        )

    def _next_record(self, start: int) -> int | None:
        fd, size = self._log.fd, self._log.size
        pos = start
        while pos < size:
            chunk = os.pread(fd, _SCAN_CHUNK + len(MAGIC) - 1, pos)
            at = chunk.find(MAGIC)
            while at >= 0:
                if self._valid_at(pos + at):
                    return pos + at
                at = chunk.find(MAGIC, at + 1)
            pos += _SCAN_CHUNK
        return None

    def _valid_at(self, at: int) -> bool:
        fd, size = self._log.fd, self._log.size
        header = os.pread(fd, HEADER_BYTES, at)
        if len(header) < HEADER_BYTES:
            return False
        _, length, _ = _HEADER.unpack(header)
        if length > MAX_RECORD_BYTES or at + HEADER_BYTES + length > size:
            return False
        return check(header, os.pread(fd, length, at + HEADER_BYTES))

    def commit(self, offset: int) -> None:
        """Everything before ``offset`` is on the bus. Truncates once all of it is."""
        self.offset = offset
        if offset >= self._log.size:
            os.ftruncate(self._log.fd, 0)
            self._log.size = self.offset = 0
            self.records = 0
            self._offset_path.unlink(missing_ok=True)
            return
        write_atomically(self._offset_path, str(offset))

    def close(self) -> None:
        self._log.close()
