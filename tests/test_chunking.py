"""Sentence chunking: speak early, never split mid-number or after a title, lose nothing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.agents.chunking import SentenceChunker, split_text


def stream(text: str, sizes: list[int], **options: int) -> list[str]:
    """Feed ``text`` in tokens of the given sizes (cycled), then flush."""
    chunker = SentenceChunker(**options)
    pieces: list[str] = []
    position, index = 0, 0
    while position < len(text):
        size = max(1, sizes[index % len(sizes)]) if sizes else 1
        pieces.extend(chunker.feed(text[position : position + size]))
        position += size
        index += 1
    rest = chunker.flush()
    return [*pieces, rest] if rest else pieces


def test_sentences_are_released_at_their_ends() -> None:
    assert split_text("Hello there. How are you? I am fine!") == [
        "Hello there. ",
        "How are you? ",
        "I am fine!",
    ]


def test_first_sentence_is_released_as_soon_as_the_next_character_arrives() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("Thanks for calling") == []
    assert chunker.feed(".") == []  # "." could still be "3.5" or "Dr."
    assert chunker.feed(" How") == ["Thanks for calling. "]
    assert chunker.flush() == "How"


def test_clause_marks_end_pieces() -> None:
    assert split_text("Two options; either way: we help. Done") == [
        "Two options; ",
        "either way: ",
        "we help. ",
        "Done",
    ]


def test_short_comma_clause_stays_whole_and_long_one_is_released() -> None:
    assert split_text("Yes, sure thing.") == ["Yes, sure thing."]
    long_clause = "Our clinic on Maple Street near the public library, opens at eight."
    assert split_text(long_clause) == [
        "Our clinic on Maple Street near the public library, ",
        "opens at eight.",
    ]
    assert split_text(long_clause, min_clause_chars=200) == [long_clause]


@pytest.mark.parametrize(
    "text",
    [
        "Dr. Patel can see you on Tuesday.",
        "Please ask for Mrs. Lopez or Mr. Chen at the desk.",
        "The fee is 3.50 dollars today.",
        "Call us at 10:30 tomorrow morning.",
        "It was 1,200 dollars in total.",
        "Bring your card, e.g. a Medicare card, to the visit.",
        "Ask J. Smith at the front.",
        "See the website www.example.com for details.",
    ],
)
def test_titles_numbers_and_short_forms_do_not_end_a_sentence(text: str) -> None:
    assert split_text(text + " Next one.") == [text + " ", "Next one."]


def test_lone_lowercase_letter_and_ellipsis_do_end_a_sentence() -> None:
    assert split_text("Pick option a. Then hold.") == ["Pick option a. ", "Then hold."]
    assert split_text("Well... I think so.") == ["Well... ", "I think so."]


def test_closing_quotes_and_brackets_stay_with_their_sentence() -> None:
    assert split_text('He said "come in." Then he left.') == [
        'He said "come in." ',
        "Then he left.",
    ]
    assert split_text("It is open (until six.) Bye.") == ["It is open (until six.) ", "Bye."]


def test_line_breaks_end_pieces_without_making_blank_ones() -> None:
    assert split_text("\n\nFirst line\n\nSecond line") == ["\n\nFirst line\n", "\nSecond line"]


def test_long_text_without_boundaries_is_not_held_back() -> None:
    words = " ".join(["word"] * 200)
    chunker = SentenceChunker(max_chars=50)
    released: list[str] = []
    for token in words.split(" "):
        released.extend(chunker.feed(token + " "))
    assert len(released) >= 15  # spoken while streaming, not only at flush
    assert all(len(piece) <= 50 for piece in released)
    assert all(piece.endswith(" ") for piece in released)  # cut between words
    assert "".join(released) + chunker.flush() == words + " "


def test_a_single_huge_word_is_cut_at_max_chars() -> None:
    assert split_text("x" * 25, max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]


def test_flush_returns_the_rest_and_resets() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("No boundary here") == []
    assert chunker.flush() == "No boundary here"
    assert chunker.flush() == ""
    assert chunker.feed("Fresh. Start") == ["Fresh. "]


def test_empty_feed_is_harmless() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("") == []
    assert chunker.flush() == ""


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_clause_chars"):
        SentenceChunker(min_clause_chars=0)
    with pytest.raises(ValueError, match="max_chars"):
        SentenceChunker(max_chars=1)


def test_streamed_reply_splits_like_the_whole_text() -> None:
    text = "Sure, I can help with that. Dr. Patel is in at 9:30 on Tuesday. Does that work?"
    expected = split_text(text)
    for sizes in ([1], [2, 3], [5, 1, 7], [len(text)]):
        assert stream(text, sizes) == expected


_alphabet = st.sampled_from([*"ab .,!?;:\n3'\")Dr", "Dr.", "3.5", "e.g.", " Mr. "])


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(_alphabet, max_size=60),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=5),
    min_clause=st.integers(1, 60),
    max_chars=st.integers(2, 80),
)
def test_nothing_is_lost_or_reordered(
    parts: list[str], sizes: list[int], min_clause: int, max_chars: int
) -> None:
    text = "".join(parts)
    pieces = stream(text, sizes, min_clause_chars=min_clause, max_chars=max_chars)
    assert "".join(pieces) == text
    assert all(pieces)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_alphabet, max_size=60), sizes=st.lists(st.integers(1, 9), min_size=1))
def test_token_boundaries_do_not_change_the_pieces(parts: list[str], sizes: list[int]) -> None:
    text = "".join(parts)
    assert stream(text, sizes, max_chars=10_000) == split_text(text, max_chars=10_000)
