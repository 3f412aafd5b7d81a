"""What a stored reply is keyed on: the agent's digest, what it last said, what the caller said.

A transcript hash never hits (every call differs) and the caller's last line alone hands one
caller's answer to another in a different context ("yes" to "shall I book it?" versus "yes"
to "anything else?"). The key is the agent digest (a new prompt, model or tool set is a new
agent), the agent's previous utterance (with the call's dynamic variable values replaced
by their names, so "Hi Jordan" and "Hi Sam" greetings share entries) and the caller's
last utterance, each normalised for case, punctuation and fillers.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from switchboard.protocol.inbound import Utterance

#: Sounds speech recognition writes down that carry no meaning for the answer.
FILLERS = frozenset(
    {"um", "umm", "uh", "uhh", "uhm", "er", "erm", "ah", "ahh", "hmm", "hm", "mm", "mhm", "eh"}
)
#: Environment variables that change what an agent file means (the OpenAI agent's model).
DIGEST_ENV = ("SWITCHBOARD_OPENAI_MODEL",)

_NOT_WORD = re.compile(r"[^a-z0-9']+")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})


def normalise(text: str) -> str:
    """Lower case, no punctuation, no fillers, single spaces: what the caller meant to say."""
    words = _NOT_WORD.split(text.translate(_QUOTES).lower())
    return " ".join(w.strip("'") for w in words if w.strip("'") and w.strip("'") not in FILLERS)


def context_line(agent_line: str, variables: Mapping[str, str]) -> str:
    """The agent's previous utterance, normalised, with dynamic variable values as names."""
    for name, value in variables.items():
        if isinstance(value, str) and len(value.strip()) >= 2:
            agent_line = re.sub(re.escape(value.strip()), f" var {name} ", agent_line, flags=re.I)
    return normalise(agent_line)


def previous_agent_line(transcript: Sequence[Utterance]) -> str:
    """What the agent said just before the caller's last utterance ("" at the start)."""
    for utterance in reversed(transcript[:-1] if transcript else ()):
        if utterance.role == "agent":
            return utterance.content
    return ""


def exact_key(digest: str, context: str, caller: str) -> str:
    """The key of one (agent version, context, caller line); a hex digest, safe anywhere."""
    raw = f"{digest}\x1f{context}\x1f{caller}".encode()
    return hashlib.blake2b(raw, digest_size=20).hexdigest()


def context_key(context: str) -> str:
    """Short id of a context line: the semantic index only compares lines in one context."""
    return hashlib.blake2b(context.encode(), digest_size=8).hexdigest()


def file_digest(path: Path, extra: Sequence[str] = ()) -> str:
    """Digest of an agent file (prompt, model, tools), what it loaded, and env overrides."""
    h = hashlib.blake2b(digest_size=12)
    h.update(path.read_bytes())
    for part in extra:
        h.update(b"\x1f" + part.encode())
    for name in DIGEST_ENV:
        h.update(f"\x1f{name}={os.environ.get(name, '')}".encode())
    return h.hexdigest()
