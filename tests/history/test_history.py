"""The run history's Python API: record -> list -> get -> compare, off switch, unwritable files, schema."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest

from forgetless import history
from forgetless.errors import ForgetlessError
from forgetless.history import compare_runs, flatten, get_run, history_path, list_runs, record


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = tmp_path / "h" / "history.sqlite"
    monkeypatch.setenv("FORGETLESS_HISTORY", str(path))
    return path


def test_record_list_show_round_trip(db, tmp_path):
    first = record("eval", model="tiny", config={"batch_size": 4, "suites": ["general"]},
                   metrics={"general": {"n": 10, "mc_acc": 0.5}}, paths={"results": tmp_path / "r.json"},
                   command="forgetless eval tiny")
    second = record("train", model="tiny", config={"lora": {"r": 8}}, metrics={"final_loss": 1.25},
                    paths={"run_dir": "runs/x", "missing": None})
    assert (first, second) == (1, 2)
    assert [r.id for r in list_runs()] == [2, 1]  # newest first
    assert [r.id for r in list_runs(kind="eval")] == [1]
    assert [r.id for r in list_runs(limit=1)] == [2]
    run = get_run(1)
    assert run.kind == "eval" and run.status == "ok" and run.model == "tiny"
    assert run.config == {"batch_size": 4, "suites": ["general"]}
    assert run.metrics == {"general": {"n": 10, "mc_acc": 0.5}}
    assert run.paths == {"results": str(tmp_path / "r.json")}
    assert run.command == "forgetless eval tiny" and run.host and run.version
    assert run.created.endswith("+00:00") and run.finished >= run.created
    assert get_run(2).paths["run_dir"].startswith("/")  # relative paths are stored absolute, None dropped
    assert json.loads(json.dumps(run.to_dict()))["id"] == 1


def test_compare_is_metric_by_metric_with_config_differences(db):
    a = get_run(record("eval", config={"batch_size": 4, "seed": 0},
                       metrics={"general": {"mc_acc": 0.5, "n": 10}, "verdict": "ok", "only_a": 1}))
    b = get_run(record("eval", config={"batch_size": 8, "seed": 0},
                       metrics={"general": {"mc_acc": 0.75, "n": 10}, "verdict": "bad", "only_b": True}))
    result = compare_runs(a, b)
    metrics = {d.key: d for d in result["metrics"]}
    assert list(metrics) == ["general.mc_acc", "general.n", "verdict", "only_a", "only_b"]
    assert metrics["general.mc_acc"].delta == pytest.approx(0.25)
    assert metrics["general.n"].delta == 0
    assert metrics["verdict"].delta is None and (metrics["verdict"].a, metrics["verdict"].b) == ("ok", "bad")
    assert (metrics["only_a"].b, metrics["only_b"].a, metrics["only_b"].delta) == (None, None, None)
    assert [(d.key, d.a, d.b) for d in result["config"]] == [("batch_size", 4, 8)]  # only the keys that differ


def test_flatten_keeps_plain_lists_whole():
    assert flatten({"a": {"b": 1}, "rows": [{"x": 2}, {"x": 3}], "suites": ["g", "c"], "e": {}}) == {
        "a.b": 1, "rows.0.x": 2, "rows.1.x": 3, "suites": ["g", "c"]}


def test_values_that_json_lacks_are_stored_as_valid_json(db):
    run_id = record("eval", metrics={"nan": float("nan"), "inf": float("inf"), "pair": (1, 2), "path": db})
    raw = sqlite3.connect(db).execute("SELECT metrics FROM runs WHERE id = ?", [run_id]).fetchone()[0]
    assert json.loads(raw, parse_constant=pytest.fail) == {"nan": None, "inf": None, "pair": [1, 2], "path": str(db)}


def test_unknown_id_and_kind_are_user_errors(db):
    record("eval")
    with pytest.raises(ForgetlessError, match="no run 99 in the history"):
        get_run(99)
    with pytest.raises(ForgetlessError, match="did you mean 'train'"):
        list_runs(kind="trian")
    with pytest.raises(ForgetlessError, match="unknown run kind"):
        record("evall")


def test_reading_an_absent_history_creates_nothing(db):
    assert list_runs() == [] and not db.exists()
    with pytest.raises(ForgetlessError, match="no run 1"):
        get_run(1)
    assert not db.exists()


def test_off_records_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("FORGETLESS_HOME", str(tmp_path))
    for value in ("off", "OFF", "0", "none"):
        monkeypatch.setenv("FORGETLESS_HISTORY", value)
        assert history_path() is None and record("eval") is None
        with pytest.raises(ForgetlessError, match="run history is off"):
            list_runs()
    assert list(tmp_path.iterdir()) == []


def test_default_lives_in_the_forgetless_home(monkeypatch, tmp_path):
    monkeypatch.delenv("FORGETLESS_HISTORY")
    monkeypatch.setenv("FORGETLESS_HOME", str(tmp_path))
    assert history_path() == tmp_path / "history.sqlite"
    assert record("merge") == 1 and (tmp_path / "history.sqlite").exists()


def test_unwritable_history_warns_once_and_returns_none(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FORGETLESS_HISTORY", str(blocker / "history.sqlite"))
    caplog.set_level(logging.WARNING, logger="forgetless")
    assert record("eval") is None and record("train") is None
    warnings = [r for r in caplog.records if "run history not recorded" in r.getMessage()]
    assert len(warnings) == 1 and str(blocker) in warnings[0].getMessage()
    monkeypatch.setenv("FORGETLESS_HISTORY", str(tmp_path))  # a folder: SQLite cannot open it
    assert record("eval") is None


def test_schema_is_versioned_and_in_wal_mode(db):
    record("eval")
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == len(history.MIGRATIONS)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = [row[1] for row in con.execute("PRAGMA table_info(runs)")]
    assert tuple(columns) == history.COLUMNS
