"""Guards that refuse a semantic hit when two similar-sounding lines ask different things.

Embeddings place "are you open on Saturday" next to "... on Sunday", and "is it open" next
to "is it not open": similarity measures topic, not meaning. Before a semantic candidate
is served, the caller's line and the stored line must agree on every class of word below;
the first class that differs is the refusal reason (counted by guard in ``/metrics``).
All checks are pure and cheap (a few microseconds), run only on a candidate.
"""

from __future__ import annotations

import re
from collections import Counter

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")

_WEEKDAYS = {
    d: d for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
} | {"weekend": "weekend", "weekends": "weekend", "weekday": "weekday", "weekdays": "weekday"}
_WEEKDAYS |= {f"{d}s": d for d in list(_WEEKDAYS) if d.endswith("day")}
for _short, _day in (("tues", "tuesday"), ("weds", "wednesday"), ("thurs", "thursday")):
    _WEEKDAYS[_short] = _day

_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]  # "may" is left out: "may I ..." is not a date
_RELATIVE = [
    "today",
    "tonight",
    "tomorrow",
    "yesterday",
    "morning",
    "afternoon",
    "evening",
    "night",
    "noon",
    "midday",
    "midnight",
    "week",
    "month",
    "year",
    "next",
    "last",
    "now",
    "soon",
    "later",
    "earlier",
    "early",
    "late",
    "holiday",
    "holidays",
    "christmas",
    "easter",
    "thanksgiving",
]
_DATES = {w: w.rstrip("s") if w.endswith("days") else w for w in _MONTHS + _RELATIVE}

_NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
    "hundred",
    "thousand",
    "million",
    "half",
    "quarter",
    "couple",
    "dozen",
    "single",
    "double",
    "triple",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "once",
    "twice",
    "am",
    "pm",
    "o'clock",
]

_NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "none",
        "nobody",
        "nothing",
        "nowhere",
        "neither",
        "nor",
        "without",
        "cannot",
        "unable",
    ]
)

#: Words whose opposite (or sibling) changes the request; synonyms share a canonical name.
_POLARITY_GROUPS: dict[str, str] = {}
for _canonical, _words in {
    "book": "book books booking booked schedule scheduling reserve reservation make",
    "cancel": "cancel cancels cancelling canceling cancelled canceled cancellation drop",
    "change": "change changing reschedule rescheduling move moving postpone switch",
    "open": "open opens opening opened",
    "close": "close closes closing closed shut",
    "off": "off",
    "start": "start starts starting begin begins",
    "stop": "stop stops stopping end ends quit finish",
    "add": "add adding include",
    "remove": "remove removing delete exclude",
    "accept": "accept accepts take takes",
    "decline": "decline refuse reject",
    "yes": "yes yeah yep sure correct right",
    "before": "before",
    "after": "after",
    "more": "more most extra",
    "less": "less fewer least",
    "up": "up",
    "down": "down",
    "in": "in inside",
    "out": "out outside",
    "new": "new first-time",
    "existing": "existing returning current old",
    "buy": "buy purchase",
    "sell": "sell refund",
    "confirm": "confirm",
    "wrong": "wrong incorrect",
    "cheap": "cheap cheapest cheaper",
    "expensive": "expensive",
    "adult": "adult adults",
    "child": "child children kid kids baby",
    "arrive": "arrive arrival",
    "leave": "leave",
}.items():
    for _word in _words.split():
        _POLARITY_GROUPS[_word] = _canonical

#: Capitalised words that are not names (the sentence start is never counted either).
_NOT_NAMES = frozenset(
    [
        "i",
        "i'm",
        "i'd",
        "i'll",
        "i've",
        "ok",
        "okay",
        "hi",
        "hello",
        "hey",
        "yes",
        "no",
        *list(_WEEKDAYS),
        *_MONTHS,
        "may",
        "dr",
        "doctor",
        "mr",
        "mrs",
        "ms",
        "miss",
    ]
)


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.replace("\u2019", "'"))


def _negations(words: list[str]) -> int:
    return sum(1 for w in words if w in _NEGATIONS or w.endswith("n't"))


def _names(tokens: list[str]) -> frozenset[str]:
    found = set()
    sentence_start = True
    for token in tokens:
        if token[0].isupper() and not sentence_start and token.lower() not in _NOT_NAMES:
            found.add(token.lower())
        sentence_start = False
    return frozenset(found)


def _features(text: str) -> dict[str, object]:
    tokens = _tokens(text)
    words = [t.lower() for t in tokens]
    numbers = Counter(w for w in words if w[0].isdigit() or w in _NUMBER_WORDS)
    return {
        "number": numbers,
        "weekday": frozenset(_WEEKDAYS[w] for w in words if w in _WEEKDAYS),
        "date": frozenset(_DATES[w] for w in words if w in _DATES),
        "negation": _negations(words) % 2,
        "polarity": frozenset(_POLARITY_GROUPS[w] for w in words if w in _POLARITY_GROUPS)
        | (
            frozenset({"on"})
            if re.search(r"\b(?:turn|switch|put|log|sign)\s+on\b", text, re.I)
            else frozenset()
        ),
        "name": _names(tokens),
    }


GUARDS = ("number", "weekday", "date", "negation", "polarity", "name")


def guard_refusal(caller: str, stored: str) -> str | None:
    """The first guard the two lines disagree on, or ``None`` when a hit is safe to serve."""
    a, b = _features(caller), _features(stored)
    for guard in GUARDS:
        if a[guard] != b[guard]:
            return guard
    return None
