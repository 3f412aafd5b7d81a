"""What a simulated caller says: a script of caller turns, scripted or random.

A scenario file yields a fixed script with expectations; a random call draws its
utterances from ``PHRASES`` (a receptionist's callers) and decides, per turn, whether
the caller stays silent first (Retell then asks for a reminder) and whether the caller
keeps talking while the agent answers (a barge-in).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

PHRASES: tuple[str, ...] = (
    "Hi, what are your opening hours?",
    "Are you open on Saturdays?",
    "What time do you close today?",
    "Where are you located?",
    "What's your address?",
    "Is there parking nearby?",
    "I'd like to book an appointment.",
    "Can I schedule a visit for next Tuesday?",
    "Do you have anything available tomorrow afternoon?",
    "My name is Jordan Lee.",
    "Two in the afternoon works for me.",
    "Yes, that's correct.",
    "Could I speak to a real person please?",
    "How much does a consultation cost?",
    "Do you take walk-ins?",
    "Sorry, could you repeat that?",
    "I need to cancel my appointment.",
    "Can I change my booking to Friday?",
    "What's your phone number?",
    "Okay, thank you so much.",
)

#: What a caller adds when they keep talking (a barge-in).
ADDENDA: tuple[str, ...] = (
    "actually, sorry, one more thing",
    "and also for my partner",
    "I mean next week instead",
    "wait, let me check my calendar",
    "oh and is that in the morning",
)


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a scenario turn's reply must satisfy; every set field is checked."""

    contains: tuple[str, ...] = ()
    not_contains: tuple[str, ...] = ()
    matches: str | None = None
    #: "end_call", "transfer_number" or "none"; ``None`` leaves actions unchecked.
    action: str | None = None
    transfer_number: str | None = None


@dataclass(frozen=True, slots=True)
class CallerTurn:
    """One thing the caller does. ``say is None`` means silence: Retell sends a reminder."""

    say: str | None
    #: Words the caller adds while the agent is answering (a barge-in), if any.
    barge_in: str | None = None
    expect: Expectation | None = None
    #: after this turn, stay on the line in silence up to this long for the agent to
    #: speak up on its own (an ``agent_interrupt`` that ends or transfers the call)
    then_wait_s: float = 0.0
    #: silence before the turn, replacing the random think time (a replayed call keeps
    #: the recorded gap); ``None``: think as the options say
    pause_s: float | None = None
    #: pause after each partial but the last (a replayed call's word timings); empty:
    #: ``word_ms`` after every partial
    word_gaps_s: tuple[float, ...] = ()


@dataclass(slots=True)
class TurnOutcome:
    """What the agent did in answer to one caller turn."""

    reply: str = ""
    completed: bool = False
    end_call: bool = False
    transfer_number: str | None = None
    interrupted: bool = False
    digits: str | None = None
    #: tools the agent reported (``tool_call_invocation`` names) while answering
    tool_calls: tuple[str, ...] = ()
    #: request sent to its first frame, in seconds (``None``: nothing came)
    ttfb_s: float | None = None


@dataclass(slots=True)
class CallRecord:
    """One call, as it ended."""

    call_id: str
    reason: str = ""
    failed: bool = False
    greeting: str | None = None
    outcomes: list[TurnOutcome] = field(default_factory=list)
    #: what the agent said on its own (complete ``agent_interrupt``s), in order
    interrupts: list[TurnOutcome] = field(default_factory=list)


def random_script(
    rng: random.Random, turns: int, barge_in_rate: float, reminder_rate: float
) -> list[CallerTurn]:
    script: list[CallerTurn] = []
    for _ in range(turns):
        if reminder_rate and rng.random() < reminder_rate:
            script.append(CallerTurn(say=None))
        barge = rng.choice(ADDENDA) if barge_in_rate and rng.random() < barge_in_rate else None
        script.append(CallerTurn(say=rng.choice(PHRASES), barge_in=barge))
    return script
