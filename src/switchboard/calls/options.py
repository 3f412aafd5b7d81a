"""``SessionOptions``: the per-call knobs, taken from ``Settings`` once per process."""

from __future__ import annotations

import msgspec


class SessionOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The per-call knobs, taken from ``Settings`` once per process
    (``server.compose.session_options``)."""

    auto_reconnect: bool = True
    call_details: bool = True
    transcript_with_tool_calls: bool = False
    first_chunk_timeout_s: float = 2.5
    turn_timeout_s: float = 60.0
    call_details_timeout_s: float = 2.0
    fallback_text: str = "Sorry, I'm having a little trouble. Could you say that again?"
    max_frame_bytes: int = 1 << 20
    #: decode the first ``update_only`` frame of a call and every Nth after it; skip the
    #: rest unread (1: decode every one; see ``FrameDecoder.skips_update``)
    check_updates_every: int = 32
    close_grace_s: float = 5.0
    #: how long a claim or a save waits for an unreachable store (``StateKeeper``)
    state_wait_s: float = 1.5
    #: how long a claim that found nothing just after the store lost its data waits for
    #: the call's last node to hand its state back (``StateKeeper.claim``)
    lost_wait_s: float = 2.5
    #: a call whose state is unknown (store down, or lost by it) and whose
    #: ``call_details`` say it started longer ago than this is a reconnect: it is not
    #: greeted again (Retell opens a call's first socket within a second or two)
    started_call_s: float = 5.0
