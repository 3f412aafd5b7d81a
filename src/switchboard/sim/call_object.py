"""Call ids and the call object Retell pushes in ``call_details`` (spec 2).

At socket-open time the call is only registered, so the object carries the pre-call
fields (``call_status: "registered"``) and none of the post-call ones.
"""

from __future__ import annotations

import os
import random
import secrets
import string
from collections.abc import Mapping
from typing import Any

_ALPHABET = string.ascii_letters + string.digits
#: byte -> alphabet letter; the bytes past the last whole multiple of 62 are dropped, so
#: every letter is equally likely.
_LETTER_OF = bytes(ord(_ALPHABET[b % len(_ALPHABET)]) for b in range(256))
_UNEVEN = bytes(range(256 - 256 % len(_ALPHABET), 256))

#: Dynamic variables of random calls: what a CRM lookup would typically fill in.
CUSTOMER_NAMES = ("Dana", "Luis", "Priya", "Tom", "Amara", "Kenji", "Sofia", "Noah")


def new_id(length: int = 32) -> str:
    """An id shaped like Retell's (32 alphanumerics), unique across runs, not seeded.

    One ``os.urandom`` read per id, mapped in C (``secrets.choice`` per letter cost 32
    syscalls, a visible share of a simulator placing thousands of calls)."""
    letters = b""
    while len(letters) < length:
        letters += os.urandom(length + 16).translate(_LETTER_OF, _UNEVEN)
    return letters[:length].decode()


def _phone(rng: random.Random) -> str:
    return f"+1415555{rng.randrange(10_000):04d}"


def call_object(
    call_id: str,
    agent_id: str,
    rng: random.Random,
    dynamic_variables: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A registered inbound phone call, as ``call_details.call`` carries it."""
    call: dict[str, Any] = {
        "call_type": "phone_call",
        "call_id": call_id,
        "agent_id": agent_id,
        "agent_version": 1,
        "call_status": "registered",
        "from_number": _phone(rng),
        "to_number": "+14155550142",
        "direction": "inbound",
        "metadata": {},
        "data_storage_setting": "everything",
        "opt_out_sensitive_data_storage": False,
        "telephony_identifier": {"twilio_call_sid": "CA" + secrets.token_hex(16)},
    }
    if dynamic_variables is None:
        dynamic_variables = {"customer_name": rng.choice(CUSTOMER_NAMES)}
    if dynamic_variables:
        call["retell_llm_dynamic_variables"] = dict(dynamic_variables)
    return call
