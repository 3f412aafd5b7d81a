"""The ``X-Retell-Signature`` check, against the Python SDK v5.60.0 behaviour (spec 3.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.protocol.signature import SignatureRejection, check, digest, sign, verify

BODY = b'{"event":"call_ended"}'
KEY = "test-api-key"
V = 1_700_000_000_000
D = "07024cabe7dd8f6d1c6e4a8324ca92c812e6ad4a7ee506c04f7e462e3321823e"
GOOD = f"v={V},d={D}"


def test_known_vector() -> None:
    assert digest(BODY, KEY, V) == D
    assert sign(BODY, KEY, V) == GOOD
    assert verify(BODY, KEY, GOOD, now_ms=V)


@pytest.mark.parametrize("skew", [300_000, -300_000, 0, 1, -1])
def test_timestamp_within_five_minutes_either_way_is_accepted(skew: int) -> None:
    assert check(BODY, KEY, GOOD, now_ms=V + skew) is None


@pytest.mark.parametrize("skew", [300_001, -300_001, 10**9, -(10**9)])
def test_timestamp_beyond_five_minutes_either_way_is_stale(skew: int) -> None:
    assert check(BODY, KEY, GOOD, now_ms=V + skew) is SignatureRejection.STALE


def test_tolerance_is_configurable() -> None:
    assert check(BODY, KEY, GOOD, now_ms=V + 10, tolerance_ms=10) is None
    assert check(BODY, KEY, GOOD, now_ms=V + 11, tolerance_ms=10) is SignatureRejection.STALE


def test_tampered_body_is_rejected() -> None:
    assert check(BODY + b" ", KEY, GOOD, now_ms=V) is SignatureRejection.MISMATCH
    assert check(BODY.replace(b"ended", b"endeD"), KEY, GOOD, now_ms=V) is (
        SignatureRejection.MISMATCH
    )


def test_wrong_key_is_rejected() -> None:
    assert check(BODY, "wrong-api-key", GOOD, now_ms=V) is SignatureRejection.MISMATCH


def test_tampered_digest_is_rejected() -> None:
    flipped = D[:-1] + ("f" if D[-1] != "f" else "e")
    assert check(BODY, KEY, f"v={V},d={flipped}", now_ms=V) is SignatureRejection.MISMATCH


def test_timestamp_is_part_of_the_signed_message() -> None:
    # Re-using a digest with a fresher timestamp must not work (no replay extension).
    assert check(BODY, KEY, f"v={V + 1},d={D}", now_ms=V) is SignatureRejection.MISMATCH


def test_leading_zeros_in_timestamp_sign_the_decimal_value() -> None:
    # The SDK signs ``str(int(v))``: the zeros are not part of the message.
    assert check(BODY, KEY, f"v=0{V},d={D}", now_ms=V) is None


def test_missing_signature_is_rejected() -> None:
    assert check(BODY, KEY, None, now_ms=V) is SignatureRejection.MISSING
    assert not verify(BODY, KEY, None, now_ms=V)


@pytest.mark.parametrize(
    "header",
    [
        "",
        f"v={V}",
        f"d={D}",
        f"d={D},v={V}",
        f"prefix-v={V},d={D}",
        f"v={V},d={D}-suffix",
        f"v={V},d={D},extra=value",
        f"t=1,v={V},d={D}",
        f"v={V},d={D.upper()}",
        f"v={V},d={D[:32].upper()}{D[32:]}",
        f"v={V},d={D[2:]}",
        f"v={V},d={D}00",
        f"v={V},d=not-hex",
        f"v=-{V},d={D}",
        f"v=+{V},d={D}",
        f"v={V}.0,d={D}",
        f"v= {V},d={D}",
        f"v={V}, d={D}",
        f"v={V},d={D} ",
        f"v={V},d={D}\n",
        f"V={V},D={D}",
        "v=" + "\u0661\u0667" + "\u0660" * 11 + f",d={D}",  # Arabic-Indic digits: int() takes them
        "v=" + "9" * 5000 + f",d={D}",  # more digits than int() converts
    ],
)
def test_malformed_header_is_rejected(header: str) -> None:
    assert check(BODY, KEY, header, now_ms=V) is SignatureRejection.MALFORMED


def test_empty_body_signs_the_timestamp_alone() -> None:
    # GET custom functions are signed over the empty string (spec 3.2).
    assert verify(b"", KEY, sign(b"", KEY, V), now_ms=V)


def test_utf8_key_and_body_are_signed_as_bytes() -> None:
    body = '{"event":"call_ended","call":{"name":"Zoë 🚀"}}'.encode()
    header = sign(body, "clé-ü", V)
    assert verify(body, "clé-ü", header, now_ms=V)
    assert not verify(body, "cle-u", header, now_ms=V)


@given(
    body=st.binary(max_size=256),
    key=st.text(min_size=1, max_size=40),
    skew=st.integers(-300_000, 300_000),
)
def test_sign_then_verify_round_trips(body: bytes, key: str, skew: int) -> None:
    assert check(body, key, sign(body, key, V), now_ms=V + skew) is None


@given(body=st.binary(max_size=64), flip=st.integers(0, 63))
def test_any_single_flipped_digest_character_is_rejected(body: bytes, flip: int) -> None:
    good = digest(body, KEY, V)
    bad = good[:flip] + ("0" if good[flip] != "0" else "1") + good[flip + 1 :]
    assert check(body, KEY, f"v={V},d={bad}", now_ms=V) is SignatureRejection.MISMATCH
