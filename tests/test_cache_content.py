"""The content check and its lemmatiser: same content words in the same order, or no hit."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.cache import verify_cost
from switchboard.cache.content import (
    STOP_WORDS,
    ContentWords,
    EquivalenceError,
    content_agrees,
    content_words,
    load_equivalences,
    parse_equivalences,
)
from switchboard.cache.guards import guard_refusal
from switchboard.cache.lemmas import lemma, tokens


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("opens", "open"),
        ("saturdays", "saturday"),
        ("hours", "hour"),
        ("babies", "baby"),
        ("classes", "class"),
        ("children", "child"),
        ("nurses", "nurse"),
        ("closing", "close+ing"),
        ("closed", "close+ed"),
        ("stopping", "stop+ing"),
        ("booked", "book+ed"),
        ("went", "go+ed"),
        ("was", "be+ed"),
        ("is", "be"),
    ],
)
def test_inflections_are_reduced(word: str, expected: str) -> None:
    assert lemma(word) == expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("parking", "park"),  # "is there parking" is not "is there a park"
        ("evening", "even"),
        ("closed", "close"),  # a state is not a habit: "are you closed" / "do you close"
        ("booked", "book"),
        ("was", "is"),  # tense is content
        ("glasses", "glass"),
        ("news", "new"),
        ("cheaper", "cheap"),  # comparatives are content
        ("best", "good"),
    ],
)
def test_words_that_mean_different_things_are_never_merged(a: str, b: str) -> None:
    assert lemma(a) != lemma(b)


def test_contractions_are_split_into_their_words() -> None:
    assert tokens("I'd like what's on, can't won't the clinic's") == [
        "i",
        "would",
        "like",
        "what",
        "be",
        "on",
        "can",
        "will",
        "the",
        "clinic",
        "be",
    ]


def test_function_words_may_differ_content_words_may_not() -> None:
    assert content_agrees("Is there parking at the back?", "Is there any parking at the back?")
    assert content_agrees("Are you open on Saturdays?", "Are you open on Saturday?")
    assert not content_agrees("Is there parking at the back?", "Is there parking at the front?")
    assert not content_agrees("Is the waiting room upstairs?", "Is the waiting room downstairs?")


def test_a_particle_or_a_conjunction_is_content() -> None:
    assert not content_agrees("Do I need to sign in?", "Do I need to sign?")
    assert not content_agrees("Can I get on the waiting list?", "Can I get the waiting list?")
    assert not content_agrees("Do I need my ID and my card?", "Do I need my ID or my card?")
    # ... while "at", "in" and "on" are one word: where it stands matters, not which it is.
    assert content_agrees("Are you open on weekends?", "Are you open at weekends?")


def test_an_unlisted_contrast_is_refused_by_default() -> None:
    """No list names "turquoise" or "magenta": an unknown word is content."""
    assert guard_refusal("Is the door turquoise?", "Is the door magenta?") == "content"


def test_word_order_is_content() -> None:
    assert not content_agrees("Can I call you back?", "Can you call me back?")
    assert not content_agrees("Does the nurse call the doctor?", "Does the doctor call the nurse?")


def test_a_word_added_on_one_side_is_refused() -> None:
    assert not content_agrees("Can I bring my dog?", "Can I bring my dog inside?")
    assert not content_agrees("Can I transfer my records to you?", "... from you?")


def test_shipped_equivalences_apply_to_words_and_phrases() -> None:
    assert content_agrees("Do you take walk-ins?", "Do you accept walk-ins?")
    assert content_agrees("Are you taking new patients?", "Are you accepting new patients?")
    assert content_agrees("I'd like to book an appointment.", "I want to book an appointment.")
    assert content_agrees("What time do you open?", "When do you open?")
    assert content_agrees("Who am I speaking with?", "Who am I talking to?")
    assert content_words("Where are you located, please?") == ("where", "you")


def test_equivalences_do_not_reach_what_they_do_not_name() -> None:
    # "what time do" = "when do", but "what time is it" asks the clock, not a schedule.
    assert not content_agrees("What time is it?", "When is it?")
    # "close to" is deliberately not "near": "closed to new patients".
    assert not content_agrees("Is it near the station?", "Is it close to the station?")


def test_every_shipped_entry_has_content_or_is_explicitly_dropped() -> None:
    table = load_equivalences()
    assert table
    for phrase, head in table.items():
        assert phrase
        assert not (len(phrase) == 1 and phrase[0] in STOP_WORDS), phrase  # would be a no-op
        if head == ():
            assert len(phrase) == 1, phrase  # only single filler words are dropped


def test_a_malformed_equivalence_list_is_a_clear_error() -> None:
    with pytest.raises(EquivalenceError, match="line 2"):
        parse_equivalences("take = accept\njust one entry\n")
    with pytest.raises(EquivalenceError, match="already in another group"):
        parse_equivalences("take = accept\ngive = accept\n")
    with pytest.raises(EquivalenceError, match="line 1"):
        parse_equivalences("take =  = accept\n")
    with pytest.raises(EquivalenceError, match="not plain words"):
        parse_equivalences("take+ing = accept+ing\n")


def test_a_table_of_its_own_is_used_instead_of_the_shipped_one() -> None:
    words = ContentWords(parse_equivalences("doctor = physician\n"))
    assert words.of("Can I see a physician?") == words.of("Can I see a doctor?")
    assert words.of("Do you accept cards?") != words.of("Do you take cards?")


def test_lines_without_content_words_never_agree() -> None:
    """ "Is it?" and "Do you?" lean wholly on context: nothing to check, so no hit."""
    assert content_words("Is it?") == ()
    assert not content_agrees("Is it?", "Do you?")
    assert not content_agrees("Is it?", "Is it?")
    assert content_agrees("Yes.", "Yeah.")
    assert not content_agrees("Yes.", "Okay.")


def test_a_huge_line_is_checked_in_full() -> None:
    huge = "is parking free " * 2000
    assert content_words(huge) == ("park+ing", "free") * 2000
    assert not content_agrees(huge, huge + " upstairs")


def test_the_cost_benchmark_times_cold_and_warm_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("# a comment\nDo you take Visa?\tDo you accept Visa?\n", encoding="utf-8")
    for rounds in ("1", "3"):
        verify_cost.main(["--pairs", str(pairs), "--rounds", rounds])
        out = capsys.readouterr().out
        assert "guard_refusal cold" in out
        assert "guard_refusal warm" in out
        assert f"({rounds} checks)" in out


def test_the_cost_benchmark_rejects_a_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        verify_cost.main(["--pairs", str(tmp_path / "absent.tsv")])
    empty = tmp_path / "empty.tsv"
    empty.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        verify_cost.main(["--pairs", str(empty)])
    with pytest.raises(SystemExit):
        verify_cost.main(["--pairs", str(empty), "--rounds", "0"])


def test_words_in_other_scripts_are_whole_words() -> None:
    assert not content_agrees("Is Dr Müller in today?", "Is Dr Mäller in today?")
    assert not content_agrees("¿Hablan español?", "¿Hablan inglés?")
    assert not content_agrees("¿Hablan español?", "¿Hablan español, por favor?")
    assert not content_agrees("你们几点开门", "你们几点关门")
