"""Every check kind passes and fails where it should, and describes itself."""

from __future__ import annotations

import typing

import pytest
from pydantic import TypeAdapter

from forgetless.errors import ForgetlessError
from forgetless.suites import CHECKS, Check, english_words_ratio
from forgetless.suites.checks import count_sentences

check_adapter = TypeAdapter(Check)


def make(**fields):
    return check_adapter.validate_python(fields)


# (check fields, reply, expected)
CASES = [
    ({"kind": "regex", "pattern": r"\b\d{4}\b"}, "It was built in 1889.", True),
    ({"kind": "regex", "pattern": r"\b\d{4}\b"}, "It was built long ago.", False),
    ({"kind": "regex", "pattern": "paris"}, "Paris", False),
    ({"kind": "regex", "pattern": "paris", "ignore_case": True}, "Paris", True),
    ({"kind": "contains", "value": "Paris"}, "the capital is PARIS", True),
    ({"kind": "contains", "value": "Paris"}, "the capital is Rome", False),
    ({"kind": "contains", "value": "Paris", "ignore_case": False}, "the capital is PARIS", False),
    ({"kind": "not_contains", "value": "as an AI"}, "Sure, here it is.", True),
    ({"kind": "not_contains", "value": "as an AI"}, "As an AI, I cannot.", False),
    ({"kind": "not_contains", "value": "as an AI", "ignore_case": False}, "As an AI, I cannot.", True),
    ({"kind": "min_words", "n": 3}, "one two three", True),
    ({"kind": "min_words", "n": 3}, "one two", False),
    ({"kind": "max_words", "n": 3}, "  one   two\nthree ", True),
    ({"kind": "max_words", "n": 3}, "one two three four", False),
    ({"kind": "starts_with", "value": "Yes"}, "  yes, it is.", True),
    ({"kind": "starts_with", "value": "Yes"}, "No, yes.", False),
    ({"kind": "starts_with", "value": "Yes", "ignore_case": False}, "yes", False),
    ({"kind": "ends_with", "value": "Done."}, "All finished. done.\n\n", True),
    ({"kind": "ends_with", "value": "Done."}, "Done. Then more", False),
    ({"kind": "ends_with", "value": "Done.", "ignore_case": False}, "done.", False),
    ({"kind": "json_parses"}, ' {"a": 1} ', True),
    ({"kind": "json_parses"}, 'Here you go:\n```json\n{"a": [1, 2]}\n```\nEnjoy.', True),
    ({"kind": "json_parses"}, "```\n[1, 2]\n```", True),
    ({"kind": "json_parses"}, '{"a": 1,}', False),
    ({"kind": "json_parses"}, "Here you go: {a: 1}", False),
    ({"kind": "json_has_keys", "keys": ["name", "age"]}, '{"name": "Ann", "age": 3, "x": null}', True),
    ({"kind": "json_has_keys", "keys": ["name", "age"]}, 'Sure!\n```json\n{"name": "Ann", "age": 3}\n```', True),
    ({"kind": "json_has_keys", "keys": ["name", "age"]}, '{"name": "Ann"}', False),
    ({"kind": "json_has_keys", "keys": ["name"]}, '[{"name": "Ann"}]', False),
    ({"kind": "json_has_keys", "keys": ["name"]}, "not json", False),
    ({"kind": "list_items_at_least", "n": 4}, "Fruits:\n- apple\n* pear\n\u2022 plum\n  1. fig", True),
    ({"kind": "list_items_at_least", "n": 2}, "1) apple\n2) pear", True),
    ({"kind": "list_items_at_least", "n": 3}, "- apple\n- pear\n-no space\n-", False),
    ({"kind": "list_items_at_least", "n": 1}, "apple, pear and plum", False),
    ({"kind": "number_equals", "value": 1200}, "First 3, then the total is 1,200.", True),
    ({"kind": "number_equals", "value": -2.5}, "x = -2.5", True),
    ({"kind": "number_equals", "value": 3.14, "tolerance": 0.01}, "pi is about 3.1416", True),
    ({"kind": "number_equals", "value": 3.14}, "pi is about 3.1416", False),
    ({"kind": "number_equals", "value": 42}, "The answer is 42, not 41.", False),
    ({"kind": "number_equals", "value": 12}, "There are twelve months.", True),
    ({"kind": "number_equals", "value": 12}, "I don't know.", False),
    ({"kind": "one_of", "values": ["yes", "no"]}, "Yes, because it rains.", True),
    ({"kind": "one_of", "values": ["yes", "no"]}, "NO.", True),
    ({"kind": "one_of", "values": ["New York"]}, "new york!", True),
    ({"kind": "one_of", "values": ["yes", "no"]}, "Maybe yes.", False),
    ({"kind": "max_sentences", "n": 2}, "Pi is 3.14. It is irrational!", True),
    ({"kind": "max_sentences", "n": 2}, "One. Two? Three!", False),
    ({"kind": "max_sentences", "n": 1}, "No end punctuation at all", True),
    ({"kind": "english_words_ratio", "min": 0.7}, "The cat sat on the mat and looked at the birds in the garden.", True),
    ({"kind": "english_words_ratio", "min": 0.7}, "xq zzv blorf qwerty vvv kkkk asdf ghjk", False),
    ({"kind": "english_words_ratio", "min": 0.5}, "", False),
    ({"kind": "english_words_ratio", "min": 0.0}, "", True),
    # lm-eval's IFEval verifier (tests/suites/test_ifeval_checks.py covers every instruction)
    ({"kind": "ifeval", "instruction": "punctuation:no_comma"}, "Red and blue.", True),
    ({"kind": "ifeval", "instruction": "punctuation:no_comma"}, "Red, blue.", False),
]


@pytest.mark.parametrize("fields, reply, expected", CASES, ids=[f"{c[0]['kind']}-{i}" for i, c in enumerate(CASES)])
def test_check(fields, reply, expected):
    check = make(**fields)
    assert check.passes(reply) is expected
    assert check.describe() and "\n" not in check.describe()


def test_every_kind_has_cases():
    assert {c[0]["kind"] for c in CASES} == set(CHECKS.names())
    for kind in CHECKS.names():
        results = {expected for fields, _, expected in CASES if fields["kind"] == kind}
        assert results == {True, False}, kind


def test_kind_literal_matches_registered_name():
    for name in CHECKS.names():
        cls = CHECKS.get(name)
        assert typing.get_args(cls.model_fields["kind"].annotation) == (name,)
        assert cls.model_config["extra"] == "forbid"


def test_unknown_kind_in_registry_suggests():
    with pytest.raises(ForgetlessError, match="did you mean 'max_words'"):
        CHECKS.get("max_word")


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        CHECKS.register("regex")(object)


def test_describe_examples():
    assert make(kind="regex", pattern="^a", ignore_case=True).describe() == "matches /^a/i"
    assert make(kind="contains", value="Paris").describe() == "contains 'Paris' (any case)"
    assert make(kind="number_equals", value=3, tolerance=0.5).describe() == "last number is 3 \u00b1 0.5"
    assert make(kind="max_sentences", n=1).describe() == "at most 1 sentence"
    assert make(kind="english_words_ratio", min=0.6).describe() == "at least 60% common English words"


def test_english_words_ratio_values():
    assert english_words_ratio("the the the") == 1.0
    assert english_words_ratio("Models don't forget; they're learning things.") == 1.0  # -s/-ing forms, contractions
    assert english_words_ratio("123 456") == 0.0
    assert 0.4 < english_words_ratio("the zzkq") < 0.6


def test_common_word_list_is_about_a_thousand_lowercase_words():
    from forgetless.suites.checks import common_words

    words = common_words()
    assert 1000 <= len(words) <= 1500
    assert all(w == w.lower() and " " not in w for w in words)
    assert {"the", "and", "water", "people"} <= words


def test_count_sentences():
    assert count_sentences("") == 0
    assert count_sentences("It costs 3.50 dollars. Cheap!") == 2
    assert count_sentences("Wait... what?!") == 2
