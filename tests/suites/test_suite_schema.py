"""Parsing items: every valid type, and every bad input naming file:line and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from forgetless.errors import ForgetlessError
from forgetless.suites import (
    CheckItem,
    GenItem,
    McItem,
    TextItem,
    parse_item,
    read_suite,
)
from forgetless.suites.checks import MaxWords, Regex

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = json.loads((FIXTURES / "examples.json").read_text())  # one valid item of each type
CHECK = EXAMPLES["check"]
GEN = EXAMPLES["gen"]
MC = EXAMPLES["mc"]
TEXT = EXAMPLES["text"]


def with_(base: dict, **changes) -> dict:
    """A copy of `base` with fields changed; a value of `...` removes the field."""
    out = {**base, **changes}
    return {k: v for k, v in out.items() if v is not ...}


def test_parses_mc():
    item = parse_item(MC)
    assert isinstance(item, McItem)
    assert item.choices == ["Paris", "London", "Rome", "Berlin"]
    assert item.correct_choice == "Paris"
    assert item.meta == {}


def test_an_answer_prefix_is_optional_and_loses_trailing_spaces():
    assert parse_item(MC).answer_prefix is None
    assert parse_item(with_(MC, answer_prefix="The answer is ")).answer_prefix == "The answer is"


def test_parses_gen_with_default_match():
    item = parse_item(with_(GEN, match=..., answers=["Paris"]))
    assert isinstance(item, GenItem) and item.match == "contains"
    assert item.is_correct("It is Paris.")


def test_parses_check_with_default_severity():
    item = parse_item(CHECK)
    assert isinstance(item, CheckItem) and item.severity == "medium"
    assert [type(c) for c in item.checks] == [MaxWords, Regex]
    assert item.passes("Apple") and not item.passes("apple")
    assert [c.kind for c in item.failed_checks("a banana is a long yellow fruit")] == ["max_words", "regex"]


def test_parses_text_with_meta():
    item = parse_item(with_(TEXT, meta={"source": "pangram", "nested": {"ok": [1, 2]}}))
    assert isinstance(item, TextItem)
    assert item.meta["nested"] == {"ok": [1, 2]}


def test_to_dict_round_trips_and_puts_meta_last():
    item = parse_item(with_(TEXT, meta={"a": 1}))
    d = item.to_dict()
    assert list(d) == ["id", "type", "category", "text", "meta"]
    assert parse_item(d) == item
    assert "meta" not in parse_item(TEXT).to_dict()


def test_items_are_frozen():
    item = parse_item(MC)
    with pytest.raises(ValidationError, match="frozen"):
        item.answer = 1  # type: ignore[misc]


# (lines, line number of the error, the message that must follow "file:line: ")
BAD = {
    "missing field": ([with_(MC, question=...)], 1, "missing field 'question'"),
    "misspelt field": ([TEXT, with_(MC, question=..., questoin="Q?")], 2, "unknown field 'questoin' (did you mean 'question'?"),
    "extra field": ([with_(TEXT, notes="x")], 1, "unknown field 'notes'"),
    "answer as string": ([with_(MC, answer="0")], 1, "field 'answer': expected a whole number, got \"0\""),
    "answer as bool": ([with_(MC, answer=True)], 1, "field 'answer': expected a whole number, got true"),
    "answer as float": ([with_(MC, answer=1.0)], 1, "field 'answer': expected a whole number, got 1.0"),
    "answer out of range": ([with_(MC, answer=7)], 1, "field 'answer': 7 is out of range for 4 choices (answer is a 0-based index, 0 to 3)"),
    "answer negative": ([with_(MC, answer=-1)], 1, "field 'answer': -1 is out of range for 4 choices"),
    "answer 1-based": ([with_(MC, answer=4)], 1, "field 'answer': 4 is out of range for 4 choices"),
    "duplicate choices": ([with_(MC, choices=["Paris", "Rome", " paris"])], 1, "field 'choices': choice 2 ' paris' repeats choice 0"),
    "one choice": ([with_(MC, choices=["Paris"])], 1, "field 'choices': needs at least 2 entries, got 1"),
    "eleven choices": ([with_(MC, choices=[str(i) for i in range(11)])], 1, "field 'choices': allows at most 10 entries, got 11"),
    "empty choice": ([with_(MC, choices=["Paris", " "])], 1, "field 'choices[1]': must not be empty"),
    "choice not a string": ([with_(MC, choices=["Paris", 3])], 1, "field 'choices[1]': expected a string, got 3"),
    "choices not a list": ([with_(MC, choices="Paris")], 1, "field 'choices': expected a list, got \"Paris\""),
    "empty question": ([with_(MC, question="")], 1, "field 'question': must not be empty"),
    "blank answer prefix": ([with_(MC, answer_prefix=" ")], 1, "field 'answer_prefix': must not be empty"),
    "blank id": ([with_(MC, id="  ")], 1, "field 'id': must not be empty"),
    "id not a string": ([with_(MC, id=3)], 1, "field 'id': expected a string, got 3"),
    "meta not an object": ([with_(TEXT, meta=[1])], 1, "field 'meta': expected an object, got [1]"),
    "missing type": ([with_(TEXT, type=...)], 1, "missing field 'type' (one of: mc, gen, check, text)"),
    "unknown type": ([with_(TEXT, type="txt")], 1, "field 'type': unknown item type \"txt\" (did you mean 'text'?"),
    "type not a string": ([with_(TEXT, type=1)], 1, "field 'type': unknown item type 1"),
    "unknown match mode": ([with_(GEN, match="exatc")], 1, "field 'match': \"exatc\" is not allowed (did you mean 'exact'?"),
    "no answers": ([with_(GEN, answers=[])], 1, "field 'answers': needs at least 1 entry, got 0"),
    "non-numeric answer": ([with_(GEN, answers=["forty"])], 1, "field 'answers': answer 0 'forty' is not a number"),
    "unknown severity": ([with_(CHECK, severity="urgent")], 1, "field 'severity': \"urgent\" is not allowed"),
    "no checks": ([with_(CHECK, checks=[])], 1, "field 'checks': needs at least 1 entry, got 0"),
    "unknown check kind": (
        [MC, with_(CHECK, checks=[{"kind": "max_words", "n": 3}, {"kind": "regx", "pattern": "a"}])],
        2,
        "field 'checks[1].kind': unknown check kind 'regx' (did you mean 'regex'?",
    ),
    "check without kind": ([with_(CHECK, checks=[{"pattern": "a"}])], 1, "missing field 'checks[0].kind' (available: "),
    "check not an object": ([with_(CHECK, checks=["regex"])], 1, "field 'checks[0]': expected an object, got \"regex\""),
    "misspelt check field": (
        [with_(CHECK, checks=[{"kind": "regex", "patern": "a"}])],
        1,
        "unknown field 'checks[0].patern' (did you mean 'pattern'?",
    ),
    "check field named like its kind": (
        [with_(CHECK, checks=[{"kind": "regex", "pattern": "a", "regex": "b"}])],
        1,
        "unknown field 'checks[0].regex'",
    ),
    "missing check field": ([with_(CHECK, checks=[{"kind": "contains"}])], 1, "missing field 'checks[0].value'"),
    "invalid regex": ([with_(CHECK, checks=[{"kind": "regex", "pattern": "(unclosed"}])], 1, "field 'checks[0].pattern': invalid regular expression: missing )"),
    "huge repeat regex": ([with_(CHECK, checks=[{"kind": "regex", "pattern": "a{99999999999}"}])], 1, "field 'checks[0].pattern': invalid regular expression"),
    "long regex": ([with_(CHECK, checks=[{"kind": "regex", "pattern": "a" * 501}])], 1, "field 'checks[0].pattern': pattern is 501 characters, more than the 500 limit"),
    "zero min_words": ([with_(CHECK, checks=[{"kind": "min_words", "n": 0}])], 1, "field 'checks[0].n': must be >= 1, got 0"),
    "ratio above 1": ([with_(CHECK, checks=[{"kind": "english_words_ratio", "min": 1.5}])], 1, "field 'checks[0].min': must be <= 1"),
    "negative tolerance": (
        [with_(CHECK, checks=[{"kind": "number_equals", "value": 3, "tolerance": -1}])],
        1,
        "field 'checks[0].tolerance': must be >= 0, got -1",
    ),
    "empty keys": ([with_(CHECK, checks=[{"kind": "json_has_keys", "keys": []}])], 1, "field 'checks[0].keys': needs at least 1 entry, got 0"),
    "ignore_case as string": (
        [with_(CHECK, checks=[{"kind": "contains", "value": "a", "ignore_case": "yes"}])],
        1,
        "field 'checks[0].ignore_case': expected true or false, got \"yes\"",
    ),
    "duplicate ids": ([MC, TEXT, with_(GEN, id="mc1")], 3, "field 'id': duplicate id 'mc1', first used on line 1"),
    "invalid JSON": ([MC, "", '{"id": "x",'], 3, "invalid JSON"),
    "not an object": ([MC, "[1, 2]"], 2, "expected a JSON object, got list"),
    "NaN": ([MC, '{"id": "t", "type": "text", "category": "c", "text": "x", "meta": {"v": NaN}}'], 2, "NaN and Infinity are not valid JSON numbers"),
    "lone surrogate": ([MC, '{"id": "\\ud800", "type": "text", "category": "c", "text": "x"}'], 2, "contains a lone surrogate"),
    "non-UTF-8": ([MC, b'{"id": "caf\xe9"}\n'], 2, "not valid UTF-8"),
}


@pytest.mark.parametrize("lines, lineno, message", BAD.values(), ids=BAD.keys())
def test_bad_input_names_file_line_and_field(write_suite_file, lines, lineno, message):
    path = write_suite_file(*lines)
    with pytest.raises(ForgetlessError) as e:
        read_suite(path)
    assert str(e.value).startswith(f"{path}:{lineno}: {message}")
    assert "\n" not in str(e.value)


def test_empty_file(write_suite_file):
    path = write_suite_file("", "  ")
    with pytest.raises(ForgetlessError, match="file is empty") as e:
        read_suite(path)
    assert e.value.where == str(path)


def test_missing_file(tmp_path):
    with pytest.raises(ForgetlessError, match="file not found"):
        read_suite(tmp_path / "nope.jsonl")


def test_deeply_nested_json_is_a_forgetless_error(write_suite_file):
    path = write_suite_file(MC, "[" * 100_000)
    with pytest.raises(ForgetlessError, match="nested too deeply"):
        read_suite(path)


def test_parse_item_without_location_has_no_prefix():
    with pytest.raises(ForgetlessError) as e:
        parse_item(with_(MC, answer=9))
    assert str(e.value).startswith("field 'answer': 9 is out of range")
