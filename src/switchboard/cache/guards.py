"""Guards that refuse a semantic hit when two similar-sounding lines ask different things.

Embeddings place "are you open on Saturday" next to "... on Sunday", and "is it open" next
to "is it not open": similarity measures topic, not meaning. Before a semantic candidate
is served, the caller's line and the stored line must agree on every class of word below;
the first class that differs is the refusal reason (counted by guard in ``/metrics``).
All checks are pure and cheap (a few microseconds), run only on a candidate.

The named guards give a refusal its reason; the last one, ``content`` (``cache/content.py``),
is what makes the tier safe by construction: the two lines must agree on every content word,
so a contrast no list here names ("at the back" / "at the front") is refused as well.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

from switchboard.cache.content import content_agrees

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

#: Requests: a line that asks for one of these must not get the answer to a line that does
#: not (book versus cancel versus change). Synonyms share a canonical name.
_ACTIONS: dict[str, str] = {}
for _canonical, _words in {
    "book": "book books booking booked schedule scheduling reserve reservation",
    "cancel": "cancel cancels cancelling canceling cancelled canceled cancellation",
    "change": "change changing reschedule rescheduling move moving postpone",
    "add": "add adding",
    "remove": "remove removing delete",
    "buy": "buy purchase",
    "refund": "refund refunds",
    "start": "start starts starting begin",
    "stop": "stop stops stopping quit",
    "off": "off",
}.items():
    for _word in _words.split():
        _ACTIONS[_word] = _canonical

#: Opposites: one line may leave the topic implicit ("your hours" / "your opening hours"),
#: but the two lines may never name opposite ends ("open" / "close").
_POLES: dict[str, str] = {}
_OPPOSITE: dict[str, str] = {}
for _pair in (
    ("open opens opening opened", "close closes closing closed shut"),
    ("accept accepts take takes", "decline declines refuse refuses reject rejects"),
    ("before", "after"),
    ("more most extra", "less fewer least"),
    ("inside indoor indoors", "outside outdoor outdoors"),
    ("new", "existing returning current"),
    ("cheap cheaper cheapest", "expensive pricier"),
    ("adult adults", "child children kid kids baby babies"),
    ("arrive arriving arrival", "leave leaving"),
    ("early earlier", "late later"),
    ("minimum", "maximum"),
    ("entrance entry", "exit"),
    ("include includes included", "exclude excludes excluded"),
    ("allowed permitted", "forbidden banned"),
):
    _left, _right = (words.split() for words in _pair)
    for _word in _left:
        _POLES[_word] = _left[0]
    for _word in _right:
        _POLES[_word] = _right[0]
    _OPPOSITE[_left[0]] = _right[0]
    _OPPOSITE[_right[0]] = _left[0]

_TURN_ON = re.compile(r"\b(?:turn|switch|put|log|sign|keep)\s+(?:\w+\s+)?on\b", re.I)


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
    """The line's guard features; memoised, as a stored line is compared again and again."""
    if len(text) > _CACHED_CHARS:
        return _compute_features(text)
    return _cached_features(text)


def _compute_features(text: str) -> dict[str, object]:
    tokens = _tokens(text)
    words = [t.lower() for t in tokens]
    actions = {_ACTIONS[w] for w in words if w in _ACTIONS}
    if _TURN_ON.search(text):
        actions.add("on")
    return {
        "number": Counter(w for w in words if w[0].isdigit() or w in _NUMBER_WORDS),
        "weekday": frozenset(_WEEKDAYS[w] for w in words if w in _WEEKDAYS),
        "date": frozenset(_DATES[w] for w in words if w in _DATES),
        "negation": _negations(words) % 2,
        "polarity": frozenset(actions),
        "poles": frozenset(_POLES[w] for w in words if w in _POLES),
        "name": _names(tokens),
    }


_cached_features = lru_cache(maxsize=4096)(_compute_features)
#: Lines longer than this are not memoised (the cache would hold them).
_CACHED_CHARS = 512

GUARDS = ("number", "weekday", "date", "negation", "polarity", "name")


def guard_refusal(caller: str, stored: str) -> str | None:
    """The first guard the two lines disagree on, or ``None`` when a hit is safe to serve."""
    a, b = _features(caller), _features(stored)
    for guard in GUARDS:
        if a[guard] != b[guard]:
            return guard
    poles_a, poles_b = a["poles"], b["poles"]
    assert isinstance(poles_a, frozenset)
    assert isinstance(poles_b, frozenset)
    if any(_OPPOSITE[p] in poles_b for p in poles_a) or any(
        _OPPOSITE[p] in poles_a for p in poles_b
    ):
        return "polarity"
    if not content_agrees(caller, stored):
        return "content"
    return None
