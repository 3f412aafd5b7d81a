"""The call transcript as Retell sends it: the whole call so far, on every frame (spec 1.5).

A transcript grows by one utterance per speaker turn but is sent many times per turn
(every partial and every request), so finished utterances are JSON-encoded once and kept
as one comma-joined byte string; a frame is then a single concatenation. The caller's
utterance in progress grows word by word: each of its words is encoded once, and a
partial joins the first ``n`` (the bytes are those of encoding the whole utterance).

``words`` timings are seconds of simulated audio time since the call started: the
caller speaks at ``SECONDS_PER_WORD`` and so does the agent, whatever the wall clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

SECONDS_PER_WORD = 0.32
_STEP_MS = 320
_WORD_MS = 280
_PAUSE_S = 0.6


class _Word(msgspec.Struct):
    word: str
    start: float
    end: float


class _Utterance(msgspec.Struct):
    role: str
    content: str
    words: list[_Word]


_encoder = msgspec.json.Encoder()


def _timed(words: Sequence[str], start: float) -> list[_Word]:
    # Integer milliseconds, so timings come out as short decimals without rounding.
    t = int(start * 1000)
    return [
        _Word(word, (t + i * _STEP_MS) / 1000, (t + i * _STEP_MS + _WORD_MS) / 1000)
        for i, word in enumerate(words)
    ]


def _join(history: bytes, item: bytes) -> bytes:
    return history + b"," + item if history else item


class Transcript:
    """One call's transcript and the frames that carry it.

    ``with_tool_calls`` mirrors the server's ``config.transcript_with_tool_calls``: when
    set, frames also carry ``transcript_with_tool_calls``, built from the utterances and
    the tool events the server reported, in the order they happened (spec 1.6).
    """

    __slots__ = (
        "_history",
        "_history_tc",
        "_pending",
        "_pending_tools",
        "_pending_words",
        "_user_encoded",
        "_user_words",
        "_with_tool_calls",
        "audio_s",
        "utterances",
    )

    def __init__(self) -> None:
        self._history = b""
        self._history_tc = b""
        self._pending: bytes | None = None
        self._pending_words = 0
        self._pending_tools = b""
        self._user_words: list[str] = []
        #: each word of the caller's utterance in progress, JSON-encoded with its timings
        self._user_encoded: list[bytes] = []
        self.audio_s = 0.0
        self.utterances = 0
        self._with_tool_calls = False

    @property
    def with_tool_calls(self) -> bool:
        return self._with_tool_calls

    @with_tool_calls.setter
    def with_tool_calls(self, on: bool) -> None:
        # Utterances are kept twice only while the frames carry both lists; turned on late
        # (the config arrives after the first utterance), the second list starts as a copy.
        if on and not self._with_tool_calls and not self._history_tc:
            self._history_tc = self._history
        self._with_tool_calls = on

    def user_says(self, words: Sequence[str], heard: int | None = None) -> None:
        """Set the caller's utterance in progress: ``words`` is what they will have said,
        of which ASR has ``heard`` so far (all by default). Called once per partial, so
        the word timings are computed once per utterance and sliced."""
        if words != self._user_words:
            self._user_words = list(words)
            self._user_encoded = [_encoder.encode(w) for w in _timed(words, self.audio_s)]
        n = len(words) if heard is None else heard
        self._pending = b"".join(
            (
                b'{"role":"user","content":',
                _encoder.encode(" ".join(words[:n])),
                b',"words":[',
                b",".join(self._user_encoded[:n]),
                b"]}",
            )
        )
        self._pending_words = n

    def commit_user(self) -> None:
        """The caller's utterance is final: it becomes part of the history."""
        if self._pending is None:
            return
        self._append(self._pending)
        if self._pending_tools:
            self._history_tc = _join(self._history_tc, self._pending_tools)
            self._pending_tools = b""
        self.audio_s += self._pending_words * SECONDS_PER_WORD + _PAUSE_S
        self._pending = None
        self._user_words = []

    def add_agent(self, text: str) -> None:
        """The agent spoke ``text`` (an empty reply adds nothing, as nothing was heard)."""
        words = text.split()
        if not words:
            return
        self._append(_encoder.encode(_Utterance("agent", text, _timed(words, self.audio_s))))
        self.audio_s += len(words) * SECONDS_PER_WORD + _PAUSE_S

    def add_tool_event(self, item: dict[str, Any]) -> None:
        """A ``tool_call_invocation``/``tool_call_result`` item, placed where it happened:
        after the caller's utterance in progress, which the agent is answering."""
        encoded = _encoder.encode(item)
        if self._pending is not None:
            self._pending_tools = _join(self._pending_tools, encoded)
        else:
            self._history_tc = _join(self._history_tc, encoded)

    def utterances_json(self) -> bytes:
        """The finished utterances as a JSON array: a call object's ``transcript_object``
        (what a replay test records a simulated call as)."""
        return b"[" + self._history + b"]"

    def update_only(self, turntaking: str | None = None) -> bytes:
        tail = b',"turntaking":"' + turntaking.encode() + b'"}' if turntaking else b"}"
        return self._frame(b'{"interaction_type":"update_only"', tail)

    def request(self, interaction_type: str, response_id: int) -> bytes:
        """A ``response_required`` or ``reminder_required`` frame for ``response_id``."""
        head = b'{"interaction_type":"%s","response_id":%d' % (
            interaction_type.encode(),
            response_id,
        )
        return self._frame(head, b"}")

    def _append(self, item: bytes) -> None:
        self._history = _join(self._history, item)
        if self.with_tool_calls:  # else never sent: not worth a copy of the whole call
            self._history_tc = _join(self._history_tc, item)
        self.utterances += 1

    def _frame(self, head: bytes, tail: bytes) -> bytes:
        pending = self._pending
        parts = [head, b',"transcript":[', self._history]
        if pending is not None:
            parts.append(b"," + pending if self._history else pending)
        parts.append(b"]")
        if self.with_tool_calls:
            parts.append(b',"transcript_with_tool_calls":[')
            parts.append(self._history_tc)
            if pending is not None:
                parts.append(b"," + pending if self._history_tc else pending)
                if self._pending_tools:
                    parts.append(b"," + self._pending_tools)
            parts.append(b"]")
        parts.append(tail)
        return b"".join(parts)
