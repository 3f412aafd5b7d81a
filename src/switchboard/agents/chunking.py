"""Cut a streamed reply into speakable pieces as early as the text allows.

Retell starts speaking at the first complete sentence, so the time the caller waits is
time-to-first-token plus the time to finish sentence one. ``SentenceChunker`` releases
text at every sentence end (``.``, ``!``, ``?``), clause end (``;``, ``:``), line break,
and at commas once a piece is long enough to be worth speaking on its own. It never holds
the whole reply: past ``max_chars`` without a boundary it cuts at the last space.

A boundary counts only once the character after it has arrived and is whitespace, so
"3.5", "10:30" and "e.g." followed by more text are never split, at the cost of holding
a piece for one more token. Titles and initials ("Dr. Patel", "J. Smith") do not end a
sentence. Concatenating every piece returned, plus ``flush()``, gives back the input
exactly: nothing is dropped or reordered.

Pure and incremental: each character is examined about once however the text is split
into tokens, so the cost per token stays flat as a reply grows.
"""

from __future__ import annotations

import re

#: Words that end with a period but rarely end a sentence (compared lower-case). Everyday
#: words ("no", "sun", "sat") are left out: holding a real sentence end costs more than
#: splitting after a rare abbreviation.
ABBREVIATIONS = frozenset(
    {
        *("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "approx", "appt"),
        *("dept", "inc", "ltd", "corp", "ave", "blvd"),
        *("jan", "feb", "apr", "jun", "jul", "aug", "sept", "oct", "nov"),
        *("tue", "tues", "thu", "thur", "thurs", "fri"),
    }
)

_BOUNDARY = re.compile(r"[.!?;:,\n]")
_CLOSERS = "\"')]}\u201d\u2019"
_WORD_BEFORE = re.compile(r"([A-Za-z.]+)$")


class SentenceChunker:
    """Incremental splitter: ``feed`` tokens as they stream, ``flush`` at the end.

    ``min_clause_chars``: a comma ends a piece only when the piece is at least this long,
    so "Yes, sure" stays whole but a long first clause goes to speech early.
    ``max_chars``: a piece with no boundary is cut at the last space before this length.
    """

    __slots__ = ("_buffer", "_scan", "max_chars", "min_clause_chars")

    def __init__(self, min_clause_chars: int = 40, max_chars: int = 240) -> None:
        if min_clause_chars < 1 or max_chars < 2:
            raise ValueError("min_clause_chars must be >= 1 and max_chars >= 2")
        self.min_clause_chars = min_clause_chars
        self.max_chars = max_chars
        self._buffer = ""
        self._scan = 0

    def feed(self, text: str) -> list[str]:
        """Add streamed text; return the pieces that are now complete (often none)."""
        if not text:
            return []
        buffer = self._buffer + text
        pieces: list[str] = []
        start = 0
        scan = self._scan
        while True:
            match = _BOUNDARY.search(buffer, scan)
            if match is None:
                scan = len(buffer)
                break
            end = self._boundary_end(buffer, start, match.start())
            if end is None:  # not decidable until more text arrives
                scan = match.start()
                break
            if end < 0:  # not a boundary
                scan = match.start() + 1
                continue
            pieces.append(buffer[start:end])
            start = scan = end
        while len(buffer) - start > self.max_chars:
            end = self._forced_end(buffer, start)
            pieces.append(buffer[start:end])
            start = end
            scan = max(scan, start)
        self._buffer = buffer[start:] if start else buffer
        self._scan = scan - start
        return pieces

    def flush(self) -> str:
        """Return whatever is left (the reply ended) and reset for reuse."""
        rest = self._buffer
        self._buffer = ""
        self._scan = 0
        return rest

    def _boundary_end(self, buffer: str, start: int, at: int) -> int | None:
        """End index (exclusive) of a piece ending at ``buffer[at]``; -1: no; None: unknown yet."""
        mark = buffer[at]
        after = at + 1
        size = len(buffer)
        if mark == "\n":
            return -1 if at == start or buffer[start:at].isspace() else after
        while after < size and buffer[after] in _CLOSERS:
            after += 1
        if after >= size:
            return None
        if not buffer[after].isspace():
            return -1
        if mark == ",":
            return after + 1 if after - start >= self.min_clause_chars else -1
        if mark == "." and _is_abbreviation(buffer, start, at):
            return -1
        return after + 1

    def _forced_end(self, buffer: str, start: int) -> int:
        limit = start + self.max_chars
        space = buffer.rfind(" ", start + 1, limit)
        return space + 1 if space > start else limit


def _is_abbreviation(buffer: str, start: int, at: int) -> bool:
    """Whether the period at ``buffer[at]`` closes a title, an initial or a dotted short form."""
    if at == start or buffer[at - 1] == ".":  # an ellipsis ends a thought
        return False
    match = _WORD_BEFORE.search(buffer, max(start, at - 12), at)
    if match is None or (match.start() > 0 and buffer[match.start() - 1].isalpha()):
        return False
    word = match.group(1)
    if "." in word:  # "e.g", "a.m", "U.S"
        return True
    if len(word) == 1:
        return word.isupper()  # an initial: "J. Smith"; a lone "a." ends a sentence
    return word.lower() in ABBREVIATIONS


def split_text(text: str, min_clause_chars: int = 40, max_chars: int = 240) -> list[str]:
    """Split a whole text the way a stream of it would be split (for tests and tools)."""
    chunker = SentenceChunker(min_clause_chars, max_chars)
    pieces = chunker.feed(text)
    rest = chunker.flush()
    if rest:
        pieces.append(rest)
    return pieces
