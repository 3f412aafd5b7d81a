"""The content check: a semantic hit needs the same content words, in the same order.

Guards that refuse known contrasts (weekdays, numbers, book/cancel, ...) are a list that is
never complete: "parking at the back" and "... at the front" differ by a word no list named.
This check turns the question around: two caller lines may share a cached reply only when
every word that carries content agrees. A word is content unless it is on a short, closed
list of function words (articles, the auxiliaries be/do/have, "to", "of", "as", "and", "but")
or is dropped by the reviewed equivalence list. "at", "in", "on" count as one word (the list
makes them equivalent) that must be present on both sides or neither: "sign in" is not "sign",
"get on the list" is not "get the list".
Nouns, verbs, adjectives, adverbs, numbers, names, pronouns, wh-words, modals and every
other preposition (before/after, from, with, behind, ...) are content, so an unknown word is
content by default: a new contrast is refused without anyone having listed it.

Words are compared as lemmas (``cache/lemmas.py``) after the shipped equivalences
(``data/equivalents.txt``: "take" = "accept", "can" = "could", ...) are applied, and the
sequences must be equal, order included: "can I call you back" is not "can you call me back".
A paraphrase that reorders or adds a content word is a miss: it costs one LLM call, never a
wrong answer. The result per line is cached, so a lookup costs a few microseconds.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from switchboard.cache.lemmas import lemma, tokens


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Function words: what two lines may differ in without changing the question. Kept short on
#: purpose; a word missing here only costs a paraphrase hit.
STOP_WORDS = _words(
    """
    a an the be do have it this that these those any
    to of as and but
    """
)

#: Pronouns, folded by person (subject, object and possessive forms are one word here).
_PRONOUNS = {
    **dict.fromkeys(("i", "me", "my", "mine", "myself"), "i"),
    **dict.fromkeys(("you", "your", "yours", "yourself", "yourselves", "ya"), "you"),
    **dict.fromkeys(("we", "us", "our", "ours", "ourselves"), "we"),
    **dict.fromkeys(("he", "him", "his", "himself"), "he"),
    **dict.fromkeys(("she", "her", "hers", "herself"), "she"),
    **dict.fromkeys(("they", "them", "their", "theirs", "themselves"), "they"),
    "its": "it",
}

DROP = "_"
#: An entry is words as a caller says them: letters, apostrophes, hyphens, single spaces.
_ENTRY = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*(?: [^\W\d_]+(?:['-][^\W\d_]+)*)*")
#: Lines longer than this are not memoised (the cache would hold them).
_CACHED_CHARS = 512
Phrase = tuple[str, ...]


class EquivalenceError(ValueError):
    """The equivalence list is malformed (the message names the line)."""


def _lemmas(text: str) -> list[str]:
    return [_PRONOUNS.get(word) or _lemma(word) for word in tokens(text)]


#: A caller's vocabulary is small; each word is reduced once.
_lemma = lru_cache(maxsize=16384)(lemma)


def parse_equivalences(text: str) -> dict[Phrase, Phrase]:
    """Each listed phrase (as lemmas) mapped to its group's first entry (``()``: dropped)."""
    table: dict[Phrase, Phrase] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entries = [entry.strip() for entry in line.split(" = ")]
        if len(entries) < 2 or not all(entries):
            raise EquivalenceError(f"line {number}: expected 'word = word [= ...]': {raw!r}")
        head = () if entries[0] == DROP else tuple(_lemmas(entries[0]))
        for entry in entries[1:] if entries[0] == DROP else entries:
            if not _ENTRY.fullmatch(entry):
                raise EquivalenceError(f"line {number}: {entry!r} is not plain words")
            phrase = tuple(_lemmas(entry))
            if not phrase:
                raise EquivalenceError(f"line {number}: {entry!r} has no words")
            if phrase in table and table[phrase] != head:
                raise EquivalenceError(f"line {number}: {entry!r} is already in another group")
            table[phrase] = head
    return table


def load_equivalences() -> dict[Phrase, Phrase]:
    """The reviewed list shipped with the cache (``cache/data/equivalents.txt``)."""
    path = resources.files("switchboard.cache") / "data" / "equivalents.txt"
    return parse_equivalences(path.read_text(encoding="utf-8"))


class ContentWords:
    """Turns a caller line into its content words, given an equivalence table."""

    def __init__(self, equivalences: dict[Phrase, Phrase]) -> None:
        self._table = equivalences
        sizes: dict[str, set[int]] = {}
        for phrase in equivalences:
            sizes.setdefault(phrase[0], set()).add(len(phrase))
        #: For each word that starts a listed phrase, the phrase lengths to try, longest first.
        self._starts = {word: sorted(n, reverse=True) for word, n in sizes.items()}
        self._cached = lru_cache(maxsize=4096)(self._compute)

    def of(self, text: str) -> Phrase:
        """The content words of ``text``, in order (memoised: stored lines recur)."""
        if len(text) > _CACHED_CHARS:
            return self._compute(text)  # a huge line is not kept in memory
        return self._cached(text)

    def _compute(self, text: str) -> Phrase:
        words = _lemmas(text)
        out: list[str] = []
        i = 0
        while i < len(words):
            for size in self._starts.get(words[i], ()):
                replaced = self._table.get(tuple(words[i : i + size]))
                if replaced is not None:
                    out.extend(replaced)
                    i += size
                    break
            else:
                out.append(words[i])
                i += 1
        return tuple(w for w in out if w not in STOP_WORDS)


_SHIPPED = ContentWords(load_equivalences())


def content_words(text: str) -> Phrase:
    """The line's content words under the shipped equivalences, in order."""
    return _SHIPPED.of(text)


def content_agrees(caller: str, stored: str) -> bool:
    """Whether the two lines ask with the same content words (the semantic tier's last check).

    A line with no content word at all ("is it?", "do you?") leans wholly on the agent's
    line before it; two such lines agree on nothing that can be checked, so they never match.
    """
    words = content_words(caller)
    return bool(words) and words == content_words(stored)
