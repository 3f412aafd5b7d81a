"""Events the bus refused for good (too large, invalid): kept on local disk with the reason.

A message the bus will never take must not hold up the ones behind it, nor vanish: the
outbox parks it here, counts it (``switchboard_outbox_events{outcome="parked"}``), logs
it at error level and goes on. The file ``outbox.parked`` sits beside the spill file and
uses its framing (``spill.frame``); each record is ``[reason, unix ms, BusMessage]`` in
msgpack, readable with :func:`read_parked` to inspect or re-publish by hand. It has its
own byte cap: past it a parked event is only counted and logged.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from switchboard.events.codec import BusMessage
from switchboard.events.spill import AppendLog, SpillFull, records


class ParkedEvent(msgspec.Struct, frozen=True, array_like=True):
    reason: str
    time_ms: int
    message: BusMessage


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ParkedEvent)


class ParkedFile:
    NAME = "outbox.parked"

    def __init__(self, directory: Path, *, max_bytes: int | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._log = AppendLog(directory / self.NAME, max_bytes=max_bytes)

    def park(self, message: BusMessage, reason: str) -> bool:
        """Keep ``message``; False when it did not fit (cap or disk)."""
        body = _encoder.encode(ParkedEvent(reason, time.time_ns() // 1_000_000, message))
        try:
            self._log.append([body])
        except SpillFull:
            return False
        return True

    def close(self) -> None:
        self._log.close()


def read_parked(directory: Path) -> list[ParkedEvent]:
    """Every parked event in ``directory`` (damaged records skipped)."""
    path = directory / ParkedFile.NAME
    if not path.exists():
        return []
    out = []
    for body in records(path.read_bytes()):
        try:
            out.append(_decoder.decode(body))
        except msgspec.DecodeError:
            continue
    return out
