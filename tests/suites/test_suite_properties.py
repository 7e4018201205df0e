"""Property tests: round trips, idempotent normalization, and a parser that only says ForgetlessError."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgetless.errors import ForgetlessError
from forgetless.suites import (
    CHECKS,
    MATCH_MODES,
    contains_answer,
    find_numbers,
    matches,
    normalize,
    parse_item,
    read_suite,
    write_suite,
)

FILE_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20).filter(str.strip)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
json_leaf = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | finite | st.text(st.characters(exclude_categories=("Cs",)))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8)
meta = st.dictionaries(text, json_value, max_size=3)
number_text = st.integers(-(10**9), 10**9).map(str) | st.decimals(-1000, 1000, places=2).map(str)

CHECK_STRATEGIES = {
    "regex": st.builds(dict, pattern=st.sampled_from([r"\d+", "^[A-Z]", "yes|no", r"\bcat\b", "(?i)done"]), ignore_case=st.booleans()),
    "contains": st.builds(dict, value=text, ignore_case=st.booleans()),
    "not_contains": st.builds(dict, value=text, ignore_case=st.booleans()),
    "min_words": st.builds(dict, n=st.integers(1, 500)),
    "max_words": st.builds(dict, n=st.integers(1, 500)),
    "starts_with": st.builds(dict, value=text, ignore_case=st.booleans()),
    "ends_with": st.builds(dict, value=text, ignore_case=st.booleans()),
    "json_parses": st.builds(dict),
    "json_has_keys": st.builds(dict, keys=st.lists(text, min_size=1, max_size=4)),
    "list_items_at_least": st.builds(dict, n=st.integers(1, 20)),
    "number_equals": st.builds(dict, value=finite, tolerance=st.floats(0, 100)),
    "one_of": st.builds(dict, values=st.lists(text, min_size=1, max_size=4)),
    "max_sentences": st.builds(dict, n=st.integers(1, 20)),
    "english_words_ratio": st.builds(dict, min=st.floats(0, 1)),
    "ifeval": st.sampled_from([
        {"instruction": "punctuation:no_comma", "loose": True},
        {"instruction": "length_constraints:number_words", "kwargs": {"num_words": 40, "relation": "less than"}},
        {"instruction": "keywords:existence", "kwargs": {"keywords": ["tea", "milk"]}},
    ]),
}
assert set(CHECK_STRATEGIES) == set(CHECKS.names())

check = st.sampled_from(sorted(CHECK_STRATEGIES)).flatmap(lambda k: CHECK_STRATEGIES[k].map(lambda d: {"kind": k, **d}))


@st.composite
def mc_item(draw):
    choices = draw(st.lists(text, min_size=2, max_size=10, unique_by=lambda c: c.strip().casefold()))
    return {"type": "mc", "question": draw(text), "choices": choices, "answer": draw(st.integers(0, len(choices) - 1))}


@st.composite
def gen_item(draw):
    mode = draw(st.sampled_from(MATCH_MODES))
    answers = draw(st.lists(number_text if mode == "number" else text, min_size=1, max_size=3))
    return {"type": "gen", "prompt": draw(text), "answers": answers, "match": mode}


check_item = st.builds(
    lambda p, c, s: {"type": "check", "prompt": p, "checks": c, "severity": s},
    text,
    st.lists(check, min_size=1, max_size=4),
    st.sampled_from(["critical", "high", "medium", "low"]),
)
text_item = st.builds(lambda t: {"type": "text", "text": t}, text)


@st.composite
def suite_rows(draw):
    bodies = draw(st.lists(mc_item() | gen_item() | check_item | text_item, min_size=1, max_size=6))
    ids = draw(st.lists(text, min_size=len(bodies), max_size=len(bodies), unique=True))
    rows = []
    for id_, body in zip(ids, bodies):
        row = {"id": id_, "category": draw(text), **body}
        if draw(st.booleans()):
            row["meta"] = draw(meta)
        rows.append(row)
    return rows


@FILE_SETTINGS
@given(suite_rows())
def test_suites_round_trip(rows):
    items = [parse_item(r) for r in rows]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.jsonl"
        write_suite(items, path)
        loaded = read_suite(path)
    assert [i.model_dump() for i in loaded.items] == [i.model_dump() for i in items]
    assert [i.to_dict() for i in loaded.items] == [i.to_dict() for i in items]


FIELD_NAMES = ["id", "type", "category", "question", "choices", "answer", "prompt", "answers", "match", "checks", "severity", "text", "meta", "kind", "pattern", "n", "instruction", "kwargs"]
loose_object = st.dictionaries(
    st.sampled_from(FIELD_NAMES) | st.text(max_size=5),
    st.sampled_from(["mc", "gen", "check", "text", "regex", "contains", "(", "ifeval", "length_constraints:number_words"]) | json_value | st.lists(st.dictionaries(st.sampled_from(FIELD_NAMES), json_value, max_size=3), max_size=2),
    max_size=8,
).map(json.dumps)
any_line = st.text(max_size=40) | loose_object | suite_rows().map(lambda rows: json.dumps(rows[0]))


@FILE_SETTINGS
@given(st.lists(any_line, max_size=5))
def test_parser_only_raises_forgetless_error(lines):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.jsonl"
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
        try:
            read_suite(path)
        except ForgetlessError as e:
            assert "\n" not in e.message


@given(st.text())
def test_normalize_is_idempotent(s):
    once = normalize(s)
    assert normalize(once) == once


@given(st.text())
def test_a_text_matches_itself(s):
    assert matches(s, [s], "exact")
    assert matches(s, [s], "normalized")
    assert contains_answer(s, s) == bool(normalize(s))


@given(st.text())
def test_find_numbers_never_raises(s):
    assert all(isinstance(x, float) for x in find_numbers(s))


@given(st.integers(-(10**12), 10**12))
def test_number_mode_reads_grouped_integers(n):
    assert matches(f"The result is {n:,}.", [str(n)], "number")
