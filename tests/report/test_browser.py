"""A real headless browser opens the report: no console messages, a screenshot with something on it.

Needs Debian's `chromium` (`apt-get install -y chromium`); skipped when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import pytest

from forgetless.report import ReportData, write_report

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND"]  # the page must not need the network

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs chromium (apt-get install -y chromium)")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=90, check=False, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("kind", ["comparison", "study"])
def test_browser_renders_the_report_without_errors(tmp_path, kind, comparison, study):
    data = study if kind == "study" else ReportData.from_comparison(comparison, title="Before and after")
    page = write_report(tmp_path / "report", data)["html"]
    shot = tmp_path / "shot.png"
    proc = chromium(tmp_path, "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", "--window-size=1200,2000",
                    page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []
    assert shot.stat().st_size > 10_000 and png_size(shot) == (1200, 2000)

    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert len(re.findall(r"<svg\b", dom.stdout)) >= 3  # the browser parsed the inline charts
    assert "<script" not in dom.stdout
