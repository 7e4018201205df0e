"""Dependencies point down: cli -> workflow -> report -> compare -> eval -> stats. Detecting forgetting
(eval, compare, report) never depends on preventing it (train) or recovering from it (merge)."""

from __future__ import annotations

import subprocess
import sys

import pytest

ORDER = ["stats", "eval", "compare", "report", "workflow", "cli"]
ABOVE_DETECTION = {"train", "merge", "demo", "integrations"}


@pytest.mark.parametrize("package", ["stats", "eval", "compare", "report"])
def test_a_package_imports_nothing_above_it(package):
    code = (f"import sys, forgetless.{package}; "
            "print(' '.join(sorted({n.split('.')[1] for n in sys.modules if n.startswith('forgetless.')})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    above = set(ORDER[ORDER.index(package) + 1:]) | ABOVE_DETECTION
    assert package in loaded and not loaded & above, f"forgetless.{package} pulls in {sorted(loaded & above)}"
