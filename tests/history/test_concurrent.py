"""Acceptance (issue #8): processes recording runs at the same time leave a consistent database.

Four separate Python processes start together on a database that does not exist yet (so they
also race to create the schema and switch on WAL), and each records 50 runs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

WRITER = """
import sys
from forgetless.history import record
path, tag = sys.argv[1], sys.argv[2]
for i in range(50):
    run_id = record("eval", model=tag, config={"writer": tag, "i": i}, metrics={"i": i, "score": i / 50},
                    paths={"out": f"/nowhere/{tag}/{i}"}, path=path)
    assert run_id is not None, "a run was not recorded"
"""
WRITERS = ("a", "b", "c", "d")


def test_concurrent_writers_leave_a_consistent_database(tmp_path):
    db = tmp_path / "history.sqlite"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), tag], env=env, stderr=subprocess.PIPE,
                              text=True) for tag in WRITERS]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "warning" not in err, err

    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    rows = con.execute("SELECT id, model, config, metrics, paths FROM runs").fetchall()
    assert len(rows) == 50 * len(WRITERS)
    assert len({r[0] for r in rows}) == len(rows)
    for tag in WRITERS:
        mine = [json.loads(r[2]) for r in rows if r[1] == tag]
        assert sorted(c["i"] for c in mine) == list(range(50))  # none lost, none doubled
    for _, tag, config, metrics, paths in rows:
        assert json.loads(config)["writer"] == tag
        assert json.loads(metrics)["score"] == json.loads(metrics)["i"] / 50
        assert json.loads(paths)["out"].startswith(f"/nowhere/{tag}/")
