"""Property tests for the training-data parser and the loss mask: any file either reads back
exactly or fails with one ForgetlessError naming file:line; labels only ever copy input tokens.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from forgetless.errors import ForgetlessError
from forgetless.models.loading import resolve
from forgetless.train.data import IGNORE_INDEX, read_records, tokenize_records

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

words = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30).filter(str.strip)
turn = st.tuples(st.sampled_from(["user", "assistant"]), words)
messages = st.lists(turn, min_size=1, max_size=4).map(
    lambda turns: [{"role": "user", "content": turns[0][1]},
                   *({"role": r, "content": c} for r, c in turns[1:]),
                   {"role": "assistant", "content": turns[-1][1]}])
RECORDS = {
    "messages": messages.map(lambda m: {"messages": m}),
    "prompt_response": st.builds(lambda p, r: {"prompt": p, "response": r}, words, words),
    "text": words.map(lambda t: {"text": t}),
}
leaf = st.none() | st.booleans() | st.integers(-5, 5) | st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(leaf.filter(
    lambda x: isinstance(x, str)), inner, max_size=3), max_leaves=6)
any_object = st.dictionaries(st.sampled_from(["messages", "prompt", "response", "text", "id", "role", "x"]), value,
                             max_size=3)


def write(lines: list[str] | bytes) -> Path:
    folder = Path(tempfile.mkdtemp())
    path = folder / "d.jsonl"
    path.write_bytes(lines if isinstance(lines, bytes) else "".join(line + "\n" for line in lines).encode())
    return path


@SETTINGS
@given(st.sampled_from(sorted(RECORDS)).flatmap(lambda fmt: st.tuples(st.just(fmt), st.lists(RECORDS[fmt], min_size=1,
                                                                                              max_size=5))))
def test_valid_files_read_back_exactly(case):
    fmt, rows = case
    records = read_records(write([json.dumps(r, ensure_ascii=False) for r in rows]))
    assert [r.data for r in records] == rows
    assert {r.format for r in records} == {fmt}
    assert [r.where.rsplit(":", 1)[1] for r in records] == [str(i) for i in range(1, len(rows) + 1)]


@SETTINGS
@given(st.lists(any_object, min_size=1, max_size=4))
def test_any_object_reads_or_fails_with_file_and_line(rows):
    path = write([json.dumps(r) for r in rows])
    try:
        records = read_records(path)
    except ForgetlessError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        line = int(str(e).split(f"{path}:")[1].split(":")[0])
        assert 1 <= line <= len(rows)
    else:
        assert len(records) == len(rows)


@SETTINGS
@given(st.binary(min_size=1, max_size=200))
def test_arbitrary_bytes_never_crash_the_parser(blob):
    try:
        read_records(write(blob))
    except ForgetlessError as e:
        assert "\n" not in str(e)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve("smollm2-135m")[0])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(RECORDS)).flatmap(lambda fmt: st.lists(RECORDS[fmt], min_size=1, max_size=3)),
       st.integers(8, 160))
def test_labels_copy_inputs_or_are_ignored_and_respect_max_length(tokenizer, rows, max_length):
    out = tokenize_records(read_records(write([json.dumps(r) for r in rows])), tokenizer, max_length)
    assert len(out.examples) + len(out.dropped) == len(rows)
    for ex in out.examples:
        ids, labels = ex["input_ids"], ex["labels"]
        assert len(ids) == len(labels) <= max_length
        assert any(label != IGNORE_INDEX for label in labels)  # kept examples have something to learn
        assert all(label in (IGNORE_INDEX, token) for label, token in zip(labels, ids))
