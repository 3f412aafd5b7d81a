"""Retell's ``X-Retell-Signature`` scheme for webhooks (spec 3.2): sign and verify.

Pure and clock-free: callers pass ``now_ms``. The algorithm must stay byte-for-byte that
of Retell's Python SDK v5.60.0, or real webhooks stop verifying:

* the header must fully match ``v=<decimal ms>,d=<64 lowercase hex>``, nothing else;
* ``abs(now_ms - v) <= tolerance_ms`` (inclusive, in both directions);
* digest = HMAC-SHA256(key = API key as UTF-8, msg = raw body bytes + ``str(int(v))``),
  compared in constant time.

The body is the raw request body as received. Never re-serialise parsed JSON to verify
it: whitespace, escaping or key order may differ from what Retell signed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from enum import StrEnum

#: The request header carrying the signature (HTTP header names are case-insensitive).
SIGNATURE_HEADER = "x-retell-signature"

#: Five minutes, as in Retell's SDKs.
DEFAULT_TOLERANCE_MS = 300_000

# re.ASCII: ``\d`` must not accept non-ASCII digits that ``int()`` would still parse.
_SIGNATURE = re.compile(r"v=(\d+),d=([0-9a-f]{64})", re.ASCII)


class SignatureRejection(StrEnum):
    """Why a signature was refused; the value is the label used in logs and counters."""

    MISSING = "missing_signature"
    MALFORMED = "malformed_signature"
    STALE = "stale_signature"
    MISMATCH = "bad_digest"


def digest(body: bytes, api_key: str, timestamp_ms: int) -> str:
    """The lowercase hex HMAC-SHA256 Retell puts after ``d=``."""
    mac = hmac.new(api_key.encode(), body, hashlib.sha256)
    mac.update(str(timestamp_ms).encode())
    return mac.hexdigest()


def sign(body: bytes, api_key: str, now_ms: int) -> str:
    """The header value Retell would send for ``body`` at ``now_ms`` (simulator and tests)."""
    return f"v={now_ms},d={digest(body, api_key, now_ms)}"


def check(
    body: bytes,
    api_key: str,
    signature: str | None,
    *,
    now_ms: int,
    tolerance_ms: int = DEFAULT_TOLERANCE_MS,
) -> SignatureRejection | None:
    """Return why ``signature`` does not authenticate ``body``, or ``None`` if it does."""
    if signature is None:
        return SignatureRejection.MISSING
    match = _SIGNATURE.fullmatch(signature)
    if match is None:
        return SignatureRejection.MALFORMED
    try:
        timestamp_ms = int(match.group(1))
    except ValueError:  # more digits than int() accepts: no real timestamp looks like that
        return SignatureRejection.MALFORMED
    if abs(now_ms - timestamp_ms) > tolerance_ms:
        return SignatureRejection.STALE
    if not hmac.compare_digest(digest(body, api_key, timestamp_ms), match.group(2)):
        return SignatureRejection.MISMATCH
    return None


def verify(
    body: bytes,
    api_key: str,
    signature: str | None,
    *,
    now_ms: int,
    tolerance_ms: int = DEFAULT_TOLERANCE_MS,
) -> bool:
    """``True`` if ``signature`` is a fresh, valid signature of ``body`` (the SDK's ``verify``)."""
    return check(body, api_key, signature, now_ms=now_ms, tolerance_ms=tolerance_ms) is None
