#!/usr/bin/env bash
# Quickstart 1: set everything up, then stylise the bundled example (Tübingen as Starry Night) on this machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/stylelayer example -o example-result.png "$@"
