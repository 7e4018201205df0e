"""Run history: every eval, train, sweep, run, demo and merge, in one SQLite file.

Why SQLite: one file, no server, and safe for several processes at once. Writers use WAL mode, a
busy timeout and one short `BEGIN IMMEDIATE` transaction per run, so two runs finishing together
queue for a few milliseconds instead of corrupting the file. `PRAGMA user_version` numbers the
schema; `MIGRATIONS[i]` brings version i up to i + 1.

Where: `FORGETLESS_HISTORY` (a file path, or `off` to record nothing), else
`<forgetless home>/history.sqlite`. Recording never breaks the command that produced the result:
an unwritable database is reported once, as a warning, and the command carries on.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from forgetless.errors import ForgetlessError
from forgetless.home import forgetless_home
from forgetless.registry import did_you_mean

log = logging.getLogger(__name__)
T = TypeVar("T")

KINDS = ("eval", "train", "sweep", "run", "demo", "merge")
OFF = ("off", "none", "0", "false", "no")
BUSY_SECONDS = 30.0  # how long a writer waits for another one before giving up
COLUMNS = ("id", "kind", "created", "finished", "status", "model", "config", "metrics", "paths", "command",
           "host", "version")
MIGRATIONS: list[tuple[str, ...]] = [
    ("""CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            created TEXT NOT NULL,   -- UTC, ISO 8601
            finished TEXT,
            status TEXT NOT NULL,    -- ok | failed
            model TEXT,
            config TEXT NOT NULL DEFAULT '{}',   -- JSON
            metrics TEXT NOT NULL DEFAULT '{}',  -- JSON
            paths TEXT NOT NULL DEFAULT '{}',    -- JSON: name -> absolute path
            command TEXT,
            host TEXT,
            version TEXT)""",
     "CREATE INDEX runs_by_kind ON runs (kind, id)"),
]
_warned: set[str] = set()


@dataclass(frozen=True)
class Run:
    """One row of the history, JSON columns decoded."""

    id: int
    kind: str
    created: str
    finished: str | None
    status: str
    model: str | None
    config: dict[str, Any]
    metrics: dict[str, Any]
    paths: dict[str, str]
    command: str | None
    host: str | None
    version: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Diff:
    """One flattened key of two runs; `delta` = b - a when both are numbers."""

    key: str
    a: Any
    b: Any
    delta: float | None


def history_path(path: str | Path | None = None) -> Path | None:
    """The database file: `path`, else `FORGETLESS_HISTORY`, else the home default; None when off."""
    chosen = str(path) if path is not None else os.environ.get("FORGETLESS_HISTORY", "")
    if chosen.strip().lower() in OFF:
        return None
    return Path(chosen).expanduser() if chosen.strip() else forgetless_home() / "history.sqlite"


def _connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (we write BEGIN/COMMIT ourselves), schema brought up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
    try:
        con.execute(f"PRAGMA busy_timeout = {int(BUSY_SECONDS * 1000)}")
        _when_free(lambda: _set_up(con))
    except BaseException:
        con.close()
        raise
    return con


def _set_up(con: sqlite3.Connection) -> None:
    if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        con.execute("PRAGMA journal_mode = WAL")  # persistent: only the first writer ever sets it
    con.execute("PRAGMA synchronous = NORMAL")  # with WAL: a crash can lose the last run, never the file
    if con.execute("PRAGMA user_version").fetchone()[0] < len(MIGRATIONS):
        _migrate(con)


def _when_free(action: Callable[[], T]) -> T:
    """Run `action`, again after a short wait while the file is locked, for up to BUSY_SECONDS.

    Why: SQLite answers "database is locked" at once, without the busy timeout, while another
    process switches a new file to WAL or opens it for the first time; only a retry covers that race.
    """
    deadline, wait = time.monotonic() + BUSY_SECONDS, 0.005
    while True:
        try:
            return action()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() + wait > deadline:
                raise
            time.sleep(wait)
            wait = min(wait * 2, 0.25)


def _migrate(con: sqlite3.Connection) -> None:
    with _transaction(con):
        version = con.execute("PRAGMA user_version").fetchone()[0]  # re-read: another process may have won
        for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
            for sql in statements:
                con.execute(sql)
            con.execute(f"PRAGMA user_version = {number}")


class _transaction:
    """`BEGIN IMMEDIATE` takes the write lock up front, so a transaction never fails half-way on it."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def __enter__(self) -> sqlite3.Connection:
        self.con.execute("BEGIN IMMEDIATE")
        return self.con

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.con.execute("ROLLBACK" if exc_type else "COMMIT")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json_safe(obj: Any) -> Any:
    """Paths, tuples and numpy scalars become JSON; NaN and infinities (not JSON) become None."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if hasattr(obj, "item"):  # numpy / torch scalars
        return _json_safe(obj.item())
    return str(obj)


def _dumps(obj: Any) -> str:
    return json.dumps(_json_safe(obj or {}), ensure_ascii=False, allow_nan=False)


def _absolute(paths: dict[str, Any] | None) -> dict[str, str]:
    return {name: str(Path(p).expanduser().resolve()) for name, p in (paths or {}).items() if p is not None}


def _model_name(model: str | None) -> str | None:
    """A local model folder or file is stored absolute; built-in names and hub ids as given."""
    return str(Path(model).resolve()) if model and Path(model).exists() else model


def _version() -> str | None:
    from forgetless import __version__

    return __version__


def _warn_once(path: Path, error: Exception) -> None:
    if str(path) not in _warned:
        _warned.add(str(path))
        log.warning(f"run history not recorded: {path}: {error} (set FORGETLESS_HISTORY to another file, or "
                    "to 'off')")


def record(kind: str, *, model: str | None = None, config: dict[str, Any] | None = None,
           metrics: dict[str, Any] | None = None, paths: dict[str, Any] | None = None, status: str = "ok",
           started: str | None = None, command: str | None = None, path: str | Path | None = None) -> int | None:
    """Add one run; returns its id, or None when history is off or the database cannot be written."""
    if kind not in KINDS:
        raise ForgetlessError(f"unknown run kind '{kind}'", hint=did_you_mean(kind, list(KINDS)))
    target = history_path(path)
    if target is None:
        return None
    try:
        row = (kind, started or _now(), _now(), status, _model_name(model), _dumps(config), _dumps(metrics),
               _dumps(_absolute(paths)), command, socket.gethostname(), _version())
        with closing(_connect(target)) as con:
            run_id = _when_free(lambda: _insert(con, row))
    except (sqlite3.Error, OSError, ValueError, RuntimeError) as e:  # never the reason a finished run fails
        _warn_once(target, e)
        return None
    log.info(f"recorded as run {run_id} in {target}")
    return run_id


def _insert(con: sqlite3.Connection, row: tuple[Any, ...]) -> int:
    with _transaction(con):
        return con.execute("INSERT INTO runs (kind, created, finished, status, model, config, metrics, paths, "
                           "command, host, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row).lastrowid


# --- recording from the API -------------------------------------------------------------------

_INSIDE: ContextVar[bool] = ContextVar("forgetless_history_inside", default=False)
_CALLER: ContextVar[dict[str, Any]] = ContextVar("forgetless_history_caller", default={})


@contextmanager
def called_as(command: str | None = None, **paths: Any) -> Iterator[None]:
    """What a run recorded inside this block carries besides its API's own fields: the command line that
    asked for it (the CLI's) and paths only the caller knows, such as where it writes the result."""
    outer = _CALLER.get()
    token = _CALLER.set({"command": command or outer.get("command"), "paths": {**outer.get("paths", {}), **paths}})
    try:
        yield
    finally:
        _CALLER.reset(token)


def records(kind: str, fields: Callable[..., dict[str, Any]]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Record each outermost call of an API function as one run of `kind` once it returns.

    `fields(result, *args, **kwargs)` gives `record`'s model, config, metrics and paths. So a run started
    from Python appears in `forgetless runs` as the CLI's do, and the calls made inside a recorded one (the
    evaluations of `forgetless run`, the monitor's) belong to it and are not recorded again. Only the main
    process of a distributed launch records.
    """
    def decorate(function: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(function)
        def recorded(*args: Any, **kwargs: Any) -> T:
            if _INSIDE.get():
                return function(*args, **kwargs)
            started, token = _now(), _INSIDE.set(True)
            try:
                result = function(*args, **kwargs)
            finally:
                _INSIDE.reset(token)
            if int(os.environ.get("RANK", "0")) == 0:
                caller = _CALLER.get()
                try:
                    given = fields(result, *args, **kwargs)
                except Exception as e:  # noqa: BLE001 - never the reason a finished run fails
                    log.warning(f"run history not recorded: {type(e).__name__}: {e}")
                else:
                    record(kind, started=started, command=caller.get("command"),
                           **{**given, "paths": {**(given.get("paths") or {}), **caller.get("paths", {})}})
            return result
        return recorded
    return decorate


def _reader(path: str | Path | None) -> tuple[Path, sqlite3.Connection | None]:
    """A connection for reading, or None when nothing was recorded yet (reading never creates the file)."""
    target = history_path(path)
    if target is None:
        raise ForgetlessError("run history is off", where="FORGETLESS_HISTORY",
                              hint="unset it, or point it at a file")
    if not target.exists():
        return target, None
    try:
        return target, _connect(target)
    except (sqlite3.Error, OSError) as e:
        raise ForgetlessError(f"cannot read the run history: {e}", where=target) from None


def _run(row: tuple[Any, ...]) -> Run:
    data = dict(zip(COLUMNS, row))
    for key in ("config", "metrics", "paths"):
        data[key] = json.loads(data[key] or "{}")
    return Run(**data)


def list_runs(kind: str | None = None, limit: int | None = 20, path: str | Path | None = None) -> list[Run]:
    """The most recent runs first, optionally of one kind."""
    if kind is not None and kind not in KINDS:
        raise ForgetlessError(f"unknown run kind '{kind}'", hint=did_you_mean(kind, list(KINDS)))
    _, con = _reader(path)
    if con is None:
        return []
    where, args = ("WHERE kind = ?", [kind]) if kind else ("", [])
    with closing(con):
        rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM runs {where} ORDER BY id DESC LIMIT ?",
                           [*args, -1 if limit is None else limit]).fetchall()
    return [_run(r) for r in rows]


def get_run(run_id: int, path: str | Path | None = None) -> Run:
    target, con = _reader(path)
    row = None
    if con is not None:
        with closing(con):
            row = con.execute(f"SELECT {', '.join(COLUMNS)} FROM runs WHERE id = ?", [run_id]).fetchone()
    if row is None:
        raise ForgetlessError(f"no run {run_id} in the history", where=target, hint="see `forgetless runs list`")
    return _run(row)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}, "rows": [{"x": 2}]}` -> `{"a.b": 1, "rows.0.x": 2}`; lists of plain values stay whole."""
    if isinstance(obj, dict):
        items: Iterator[tuple[str, Any]] = ((str(k), v) for k, v in obj.items())
    elif isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        items = ((str(i), v) for i, v in enumerate(obj))
    else:
        return {prefix: obj} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    return flat


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def diff(a: dict[str, Any], b: dict[str, Any], *, changed_only: bool = False) -> list[Diff]:
    """Key-by-key comparison of two nested dicts, flattened; keys in a's order, then b's new ones."""
    fa, fb = flatten(a), flatten(b)
    out = []
    for key in [*fa, *(k for k in fb if k not in fa)]:
        va, vb = fa.get(key), fb.get(key)
        if changed_only and va == vb:
            continue
        out.append(Diff(key, va, vb, vb - va if _number(va) and _number(vb) else None))
    return out


def compare_runs(a: Run, b: Run) -> dict[str, list[Diff]]:
    """Every metric of two runs side by side, and the config keys that differ."""
    return {"metrics": diff(a.metrics, b.metrics), "config": diff(a.config, b.config, changed_only=True)}
