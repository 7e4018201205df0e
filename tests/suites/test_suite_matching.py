"""Answer matching modes, normalization and number extraction."""

from __future__ import annotations

import pytest

from forgetless.errors import ForgetlessError
from forgetless.suites import (
    contains_answer,
    find_numbers,
    matches,
    matches_choice,
    normalize,
    parse_number,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The  Eiffel-Tower!", "eiffel tower"),
        ("  Paris.\n", "paris"),
        ("It costs $1,200.50", "it costs 1200.50"),
        ("Pi is 3.14.", "pi is 3.14"),
        ("don't", "dont"),
        ("-5 degrees", "-5 degrees"),
        ("5-3", "5 3"),
        ("\u22127", "-7"),
        ("An apple", "apple"),
        ("the the cat", "cat"),
        ("The", "the"),
        ("STRASSE Stra\u00dfe", "strasse strasse"),
        ("", ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    "reply, answers, mode, expected",
    [
        ("Paris", ["Paris"], "exact", True),
        ("  Paris\n", ["Paris"], "exact", True),
        ("paris", ["Paris"], "exact", False),
        ("Paris.", ["Paris"], "exact", False),
        ("The Paris!", ["paris"], "normalized", True),
        ("Paris, France", ["Paris"], "normalized", False),
        ("The capital is Paris.", ["Paris"], "contains", True),
        ("The capital is Paris.", ["Rome", "paris"], "contains", True),
        ("Mars is a planet apart", ["art"], "contains", False),
        ("It is New York City", ["new york"], "contains", True),
        ("It is 3.5", ["5"], "contains", False),
        ("It is -5", ["5"], "contains", False),
        ("It is -5", ["-5"], "contains", True),
        ("About 1,200 people", ["1200"], "contains", True),
        ("", ["Paris"], "contains", False),
        ("The answer is 12.", ["12"], "number", True),
        ("The answer is 12.0", ["12"], "number", True),
        ("The answer is twelve.", ["12"], "number", True),
        ("12 is wrong, it is 13", ["13"], "number", True),  # the LAST number counts
        ("Two hours is 2 * 60 = 120 minutes", ["120"], "number", True),
        ("It is 13, not 12", ["13"], "number", False),
        ("About 1,200 people", ["1200"], "number", True),
        ("Roughly -0.5 then", ["-.5", "-0.5"], "number", True),
        ("0.1 + 0.2 = 0.30000000000000004", ["0.30000000000000004"], "number", True),
        ("I do not know.", ["12"], "number", False),
        ("one of the 3 answers", ["3"], "number", True),  # digits win over number words
    ],
)
def test_matches(reply, answers, mode, expected):
    assert matches(reply, answers, mode) is expected


def test_unknown_mode_suggests():
    with pytest.raises(ForgetlessError, match="did you mean 'exact'"):
        matches("x", ["x"], "exat")  # type: ignore[arg-type]


def test_contains_answer_with_empty_answer_is_false():
    assert contains_answer("anything", "...") is False


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I have 1,200 apples and -3.5 pears", [1200.0, -3.5]),
        ("between 5-10", [5.0, 10.0]),
        ("1,2345", [1.0, 2345.0]),
        ("version 1.2.3", [1.2]),
        ("abc123", []),
        ("twelve or one", [12.0, 1.0]),
        ("twenty-one", [20.0, 1.0]),
        ("nothing", []),
        ("\u22124", [-4.0]),
    ],
)
def test_find_numbers(text, expected):
    assert find_numbers(text) == expected


@pytest.mark.parametrize(
    "text, expected", [("1,200", 1200.0), (" -3.5 ", -3.5), ("Twelve", 12.0), ("12 apples", None), ("", None)]
)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("The answer is Paris.", True),
        ("Paris or London", False),  # naming a wrong choice too is not an answer
        ("London", False),
        ("I would say paris!", True),
    ],
)
def test_matches_choice(reply, expected):
    assert matches_choice(reply, ["Paris", "London", "Rome"], 0) is expected


def test_matches_choice_ignores_wrong_choices_inside_the_right_one():
    assert matches_choice("New York", ["York", "New York"], 1)
    assert not matches_choice("York", ["York", "New York"], 1)
