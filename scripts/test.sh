#!/usr/bin/env bash
# Quickstart 2: set everything up and run every test: lint, core, server protocol, and the plug-ins in real
# Krita and GIMP 3. As root (CI), the hosts are installed first; otherwise their end-to-end tests are skipped
# with a reason. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# The Ray worker pool's tests (tests/workers, the [ray] cases of tests/protocol) need the optional extra.
.venv/bin/python -c "import ray" 2>/dev/null || .venv/bin/python -m pip install --quiet -e '.[ray]'
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    bash tests/hosts/setup_krita.sh
    bash tests/hosts/setup_gimp.sh
    command -v xdotool >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xdotool >/dev/null
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pyright --project .  # standard checks of server/ and plugins/ (pyproject.toml [tool.pyright])
.venv/bin/openapi-spec-validator docs/openapi.yaml
.venv/bin/python -m pytest -ra "$@"
