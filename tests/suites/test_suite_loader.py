"""Suite container, bundled/path loading, require_items and the content fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgetless.errors import ForgetlessError
from forgetless.suites import (
    Suite,
    list_bundled_suites,
    load_suite,
    loader,
    read_suite,
    require_items,
    write_suite,
)

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = json.loads((FIXTURES / "examples.json").read_text())  # one valid item of each type
CHECK = EXAMPLES["check"]
GEN = EXAMPLES["gen"]
MC = EXAMPLES["mc"]
TEXT = EXAMPLES["text"]


@pytest.fixture
def bundled(monkeypatch):
    """Point the bundled-suite folder at the test fixtures (mini, text-only)."""
    monkeypatch.setattr(loader, "BUNDLED_DIR", FIXTURES)


def test_load_path(bundled):
    suite = load_suite(FIXTURES / "mini.jsonl")
    assert suite.name == "mini" and suite.path == FIXTURES / "mini.jsonl"
    assert [it.id for it in suite] == ["mc1", "gen1", "chk1", "txt1", "mc2"]
    assert len(suite) == 5


def test_load_path_given_as_string(write_suite_file):
    path = write_suite_file(MC, name="mine.jsonl")
    assert load_suite(str(path)).name == "mine"


def test_suite_views(bundled):
    suite = load_suite("mini")
    assert [it.id for it in suite.by_type("mc")] == ["mc1", "mc2"]
    assert suite.categories() == ["format", "geography", "math", "prose", "science"]
    assert suite.counts() == {
        "types": {"mc": 2, "gen": 1, "check": 1, "text": 1},
        "categories": {"format": 1, "geography": 1, "math": 1, "prose": 1, "science": 1},
    }
    assert suite.items[0].key == "mini/mc1"


def test_list_bundled(bundled):
    assert list_bundled_suites() == ["mini", "text-only"]


def test_list_bundled_without_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(loader, "BUNDLED_DIR", tmp_path / "missing")
    assert list_bundled_suites() == []
    with pytest.raises(ForgetlessError, match="unknown suite 'general' \\(no suites are bundled"):
        load_suite("general")


def test_unknown_bundled_name_suggests(bundled):
    with pytest.raises(ForgetlessError) as e:
        load_suite("mnii")
    assert str(e.value) == (
        "unknown suite 'mnii' (did you mean 'mini'? available: mini, text-only; or give a path to a .jsonl file)"
    )


def test_missing_path_is_not_treated_as_a_name(tmp_path):
    with pytest.raises(ForgetlessError, match="file not found"):
        load_suite(str(tmp_path / "typo.jsonl"))


def test_require_items(bundled):
    suite = load_suite("text-only")
    assert [it.id for it in require_items(suite, "text")] == ["t1"]
    with pytest.raises(ForgetlessError) as e:
        require_items(suite, "mc")
    assert e.value.message == "suite text-only has no items of type mc"
    assert e.value.where == str(FIXTURES / "text-only.jsonl")
    assert e.value.hint == "it has 1 text; add mc items or choose another suite"


def test_require_items_unknown_type(bundled):
    with pytest.raises(ForgetlessError, match="did you mean 'gen'"):
        require_items(load_suite("mini"), "gne")  # type: ignore[arg-type]


def test_sha256_ignores_layout_order_defaults_and_meta(write_suite_file):
    a = read_suite(write_suite_file(MC, CHECK, TEXT, name="a.jsonl"))
    explicit_default = {**CHECK, "severity": "medium"}
    reordered = {k: explicit_default[k] for k in reversed(explicit_default)}
    b_path = write_suite_file(
        json.dumps({**TEXT, "meta": {"note": "x"}}, indent=None, separators=(",", ":")),
        reordered,
        MC,
        name="b.jsonl",
    )
    b = read_suite(b_path)
    assert a.sha256 == b.sha256
    assert len(a.sha256) == 64


def test_sha256_changes_with_content(write_suite_file):
    a = read_suite(write_suite_file(MC, name="a.jsonl"))
    b = read_suite(write_suite_file({**MC, "answer": 1}, name="b.jsonl"))
    assert a.sha256 != b.sha256


def test_write_then_read_gives_same_items(tmp_path, bundled):
    suite = load_suite("mini")
    write_suite(suite.items, tmp_path / "copy.jsonl")
    again = read_suite(tmp_path / "copy.jsonl", name="mini")
    assert again.items == suite.items
    assert again.sha256 == suite.sha256


def test_suite_from_items_in_code():
    from forgetless.suites import parse_item

    suite = Suite("inline", None, [parse_item(GEN)])
    assert suite.items[0].key == "inline/gen1"
    assert suite.counts()["types"]["gen"] == 1


def test_every_bundled_suite_loads():
    """The real bundled suites (written elsewhere) must all parse; no-op while there are none."""
    for name in list_bundled_suites():
        suite = load_suite(name)
        assert len(suite) > 0, name
