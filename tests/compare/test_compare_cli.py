"""`forgetless compare`: exit codes, formats and --out."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from forgetless.cli.main import main


def _write(tmp_path, synth, pair, stem):
    paths = []
    for side, result in zip(("before", "after"), pair):
        path = tmp_path / f"{stem}-{side}.json"
        result.save(path)
        paths.append(str(path))
    return paths


def _run(monkeypatch, *args: str) -> int:
    """Run the real entry point in-process (subprocesses cost seconds of imports each)."""
    monkeypatch.setattr(sys, "argv", ["forgetless", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code or 0


def test_fail_on_forgetting_exits_1_through_python_m(tmp_path, synth):
    before, after = _write(tmp_path, synth, synth.drift_pair(), "drift")
    proc = subprocess.run([sys.executable, "-m", "forgetless", "compare", before, after, "--fail-on-forgetting",
                           "--format", "json"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["verdict"] == "forgetting"


def test_exit_0_without_forgetting_and_2_for_a_bad_file(tmp_path, synth, monkeypatch, capsys):
    same = [synth.mc(i, correct=True, open_correct=True) for i in range(300)]
    before, after = _write(tmp_path, synth, (synth.result(same), synth.result(same)), "clean")
    assert _run(monkeypatch, "compare", before, after, "--fail-on-forgetting", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "no_forgetting"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert _run(monkeypatch, "compare", str(bad), after, "--fail-on-forgetting") == 2
    err = capsys.readouterr().err
    assert "not a forgetless results file" in err and "Traceback" not in err


def test_markdown_and_json_written_to_out(tmp_path, synth, monkeypatch, capsys):
    before, after = _write(tmp_path, synth, synth.drift_pair(), "drift")
    md, js = tmp_path / "out" / "report.md", tmp_path / "report.json"
    assert _run(monkeypatch, "compare", before, after, "--format", "md", "--out", str(md)) == 0
    assert md.read_text().startswith("# Forgetting report")
    assert _run(monkeypatch, "compare", before, after, "--format", "json", "--out", str(js),
                "--threshold", "0.1") == 0
    data = json.loads(js.read_text())
    assert data["threshold"] == 0.1 and data["diagnosis"]["kind"] == "behavioural_drift"
    assert "report written to" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind


def test_text_to_terminal_and_training_data_flag(tmp_path, synth, monkeypatch, capsys):
    before, after = _write(tmp_path, synth, synth.drift_pair(), "drift")
    data = synth.write_training(tmp_path)
    assert _run(monkeypatch, "compare", before, after, "--training-data", str(data)) == 0
    out = capsys.readouterr().out
    assert "behavioural drift with knowledge intact" in out and "template collapse" in out


def test_mismatched_results_exit_2_with_one_line(tmp_path, synth, monkeypatch, capsys):
    items = [synth.mc(i, correct=True) for i in range(10)]
    before, after = _write(tmp_path, synth, (synth.result(items), synth.result(items, template="other")), "tmpl")
    assert _run(monkeypatch, "compare", before, after) == 2
    err = capsys.readouterr().err
    assert "different templates" in err and "Traceback" not in err
