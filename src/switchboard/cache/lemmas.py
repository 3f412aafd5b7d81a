"""A small English lemmatiser for caller lines: words to comparable forms, never a false merge.

The semantic tier's content check (``cache/content.py``) compares two lines word by word, so
"opens" must meet "open" and "Saturdays" "Saturday". What it may never do is make two words
that mean different things equal: a lemmatiser that is *wrong* only costs a paraphrase hit (the
same word is always reduced the same way on both sides), but one that *merges* "parking" with
"park" or "evening" with "even" would let a near miss through. Hence the choices:

- Plural and third-person ``-s`` are stripped (the number of a noun rarely changes the answer);
  words whose plural means something else ("glasses", "news") are kept as they are.
- ``-ing`` and ``-ed`` are normalised in spelling but *kept* as a suffix (``stop+ing``,
  ``close+ed``): "parking" stays apart from "park", "closed" from "close", "booked" from "book".
  Irregular past forms get the same ``+ed`` ("went" -> ``go+ed``), so tense is kept as well.
- Comparatives and superlatives ("cheaper", "best") are left alone: they are content.
- Contractions are split ("can't" -> "can", "I'd" -> "i would"); negation itself is the
  negation guard's business (``cache/guards.py``), which counts "n't".

No dictionary, no model, no download: a few rules and tables, pure and cached by the caller.
"""

from __future__ import annotations

import re

#: Letters and digits of any script: an ASCII-only pattern would cut "müller" and "mäller"
#: into the same "m", "ller".
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Contractions split into the words they stand for ("n't" is dropped: the negation guard
#: counts it on the original text).
_CONTRACTED = {
    "can't": ("can",),
    "cannot": ("can",),
    "won't": ("will",),
    "shan't": ("shall",),
    "ain't": ("be",),
    "o'clock": ("o'clock",),
}
_CLITICS = {"'s": "be", "'re": "be", "'m": "be", "'ve": "have", "'ll": "will", "'d": "would"}

#: Forms that no rule reaches: irregular plurals and verbs. A past form carries ``+ed``.
_IRREGULAR = {
    "is": "be",
    "are": "be",
    "am": "be",
    "been": "be",
    "being": "be",
    "was": "be+ed",
    "were": "be+ed",
    "does": "do",
    "did": "do+ed",
    "done": "do+ed",
    "doing": "do+ing",
    "has": "have",
    "had": "have+ed",
    "having": "have+ing",
    "children": "child",
    "people": "person",
    "men": "man",
    "women": "woman",
    "teeth": "tooth",
    "feet": "foot",
    "mice": "mouse",
    "went": "go+ed",
    "gone": "go+ed",
    "came": "come+ed",
    "took": "take+ed",
    "taken": "take+ed",
    "got": "get+ed",
    "gotten": "get+ed",
    "made": "make+ed",
    "paid": "pay+ed",
    "left": "left",  # the side far more often than the past of "leave" in a caller's question
    "saw": "see+ed",
    "seen": "see+ed",
    "bought": "buy+ed",
    "brought": "bring+ed",
    "told": "tell+ed",
    "said": "say+ed",
    "spoke": "speak+ed",
    "spoken": "speak+ed",
    "sent": "send+ed",
    "gave": "give+ed",
    "given": "give+ed",
    "kept": "keep+ed",
    "met": "meet+ed",
    "ran": "run+ed",
    "sold": "sell+ed",
    "wrote": "write+ed",
    "written": "write+ed",
    "felt": "feel+ed",
    "heard": "hear+ed",
    "knew": "know+ed",
    "known": "know+ed",
    "lost": "lose+ed",
    "found": "find+ed",
    "thought": "think+ed",
    "forgot": "forget+ed",
    "forgotten": "forget+ed",
    "cancelled": "cancel+ed",
    "cancelling": "cancel+ing",
    "could": "could",
    "would": "would",
    "should": "should",
}

#: Words whose ``-s``, ``-ing`` or ``-ed`` ending is not an inflection (or whose plural
#: means something else): kept whole.
_KEEP = _words(
    """
    glasses news goods clothes customs means series species physics perhaps
    thanks is this his its us yes plus bus gas lens analysis diagnosis always towards
    morning evening nothing something anything everything thing ring king string spring
    during ceiling wedding bring sing wing sling sibling awning
    need red bed fed shed seed speed feed hundred wed sacred naked wicked kindred
    """
)
_KEEP_S_ENDINGS = ("ss", "us", "is", "ous")
#: Stems that take back their final "e" once "-ing"/"-ed"/"-es" is gone ("closing" -> "close").
_E_ENDINGS = ("s", "v", "z", "c", "g")
_E_STEMS = _words(
    """
    tak mak com giv writ driv arriv schedul reschedul includ exclud declin provid hop shar
    serv continu refus chang arrang stor requir complet updat creat cur wip smok vaccinat
    """
)
_DOUBLED_OK = ("ll", "ss", "zz", "ff")
_VOWELS = frozenset("aeiouy")


def tokens(text: str) -> list[str]:
    """The line's words, lower-cased, contractions split (``"I'd"`` -> ``["i", "'d"]``)."""
    out: list[str] = []
    for word in _TOKEN.findall(text.lower().replace("\u2019", "'")):
        if word in _CONTRACTED:
            out.extend(_CONTRACTED[word])
        elif word.endswith("n't"):
            out.append(word[:-3])
        elif "'" in word:
            head, _, tail = word.partition("'")
            out.append(head)
            out.append(_CLITICS.get("'" + tail, tail))
        else:
            out.append(word)
    return out


def lemma(word: str) -> str:
    """The comparable form of one lower-case word (see the module docstring)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word in _KEEP or not word.isalpha() or len(word) <= 3:
        return word
    if word.endswith("ing") and _has_vowel(word[:-3]) and len(word) >= 6:
        return _stem(word[:-3]) + "+ing"
    if word.endswith("ied") and len(word) >= 5:
        return word[:-3] + "y+ed"
    if word.endswith("ed") and not word.endswith("eed") and _has_vowel(word[:-2]):
        return _stem(word[:-2]) + "+ed"
    return _singular(word)


def _singular(word: str) -> str:
    if not word.endswith("s") or word.endswith(_KEEP_S_ENDINGS):
        return word
    if word.endswith("ies") and len(word) >= 5:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    return word[:-1]


def _stem(stem: str) -> str:
    """Undo the spelling change an ending made: "stopp" -> "stop", "clos" -> "close"."""
    if len(stem) >= 3 and stem[-1] == stem[-2] and stem[-1] not in _VOWELS:
        return stem if stem.endswith(_DOUBLED_OK) else stem[:-1]
    if stem in _E_STEMS or (
        stem.endswith(_E_ENDINGS) and not stem.endswith(("ss", "ng")) and len(stem) >= 3
    ):
        return stem + "e"
    return stem


def _has_vowel(stem: str) -> bool:
    return any(c in _VOWELS for c in stem)
