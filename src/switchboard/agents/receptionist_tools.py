"""Tools of the Maple Street Clinic receptionist (``examples/openai-receptionist.yaml``).

``book_appointment`` shows a side-effecting tool done right for voice: a caller who barges
in cancels the turn, and the model often asks for the same booking again in the next one.
The booking is keyed on ``ToolContext.idempotency_key`` (call + tool + arguments), so the
repeat returns the first confirmation instead of booking twice. The appointment book here
lives in memory, as a demonstration; a real one would call the clinic's scheduling system
and pass the same key as that request's idempotency key.

The tools are ``async`` and never block: they run on the event loop, so they may update
the call's state without locking.
"""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass
from typing import Annotated

from switchboard.agents.base import EndCall, Transfer
from switchboard.agents.tools import ToolContext, tool

FRONT_DESK = "+14155550100"
_MAX_BOOKINGS = 10_000


@dataclass(frozen=True, slots=True)
class Booking:
    confirmation: str
    patient_name: str
    day_time: str
    reason: str
    call_id: str


_book: collections.OrderedDict[str, Booking] = collections.OrderedDict()


def bookings() -> list[Booking]:
    """Every booking made in this process, oldest first."""
    return list(_book.values())


@tool(say="One moment while I book that for you.")
async def book_appointment(
    context: ToolContext,
    patient_name: Annotated[str, "The patient's full name."],
    day_time: Annotated[str, "The day and time the caller asked for, e.g. 'Tuesday at 3 PM'."],
    reason: Annotated[str, "The reason for the visit, in a few words."],
) -> str:
    """Book an appointment once the caller has given the patient's name, a day and time,
    and the reason for the visit. Returns the confirmation to read back to the caller.
    """
    fields = {"patient_name": patient_name, "day_time": day_time, "reason": reason}
    empty = [name for name, value in fields.items() if not value.strip()]
    if empty:
        raise ValueError(f"ask the caller for: {', '.join(empty)}")
    key = context.idempotency_key
    booking = _book.get(key)
    repeat = booking is not None
    if booking is None:
        # Four digits read well aloud; derived from the key, so a repeat gets the same one.
        confirmation = str(1000 + int(key[:8], 16) % 9000)
        booking = Booking(
            confirmation, patient_name.strip(), day_time.strip(), reason.strip(), context.call_id
        )
        _book[key] = booking
        while len(_book) > _MAX_BOOKINGS:
            _book.popitem(last=False)
    booked = context.state.setdefault("appointments", [])
    if isinstance(booked, list) and not any(
        isinstance(b, dict) and b.get("confirmation") == booking.confirmation for b in booked
    ):
        booked.append({k: v for k, v in asdict(booking).items() if k != "call_id"})
    prefix = "This was already booked earlier in the call. " if repeat else ""
    return (
        f"{prefix}Booked {booking.patient_name} for {booking.day_time}, reason: "
        f"{booking.reason}. Confirmation number {' '.join(booking.confirmation)}. Remind them "
        "to arrive ten minutes early and bring their insurance card."
    )


@tool
async def transfer_to_front_desk() -> Transfer:
    """Transfer the caller to a person at the front desk.

    Use it when they ask for a human, a nurse or a doctor, or when you cannot help. Tell
    them you are transferring them; the transfer happens after you finish speaking.
    """
    return Transfer(FRONT_DESK)


@tool
async def end_call() -> EndCall:
    """Hang up after your goodbye, once the caller has said they need nothing else."""
    return EndCall()
