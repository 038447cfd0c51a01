#!/usr/bin/env bash
# Install what the Krita end-to-end tests (tests/krita/test_krita_e2e.py, marker `krita`) need:
# Debian's krita (5.1 on bookworm, embeds the system Python 3 with PyQt5) and Xvfb for the GUI.
#
# Usage (root): tests/hosts/setup_krita.sh
# Idempotent: does nothing when `krita` and `xvfb-run` are already on PATH. About 1 minute, ~800 MB, otherwise.
set -euo pipefail

log() { echo "setup_krita: $*" >&2; }

if command -v krita >/dev/null && command -v xvfb-run >/dev/null; then
    log "krita ($(command -v krita)) and xvfb-run already installed; nothing to do"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    log "must run as root (apt-get install krita python3-pyqt5 python3-sip xvfb xauth)"
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    log "apt-get not found: install krita, PyQt5 for the system Python, and xvfb with your package manager"
    exit 1
fi
start=$SECONDS
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq krita python3-pyqt5 python3-sip xvfb xauth >/dev/null
for tool in krita xvfb-run; do
    command -v "$tool" >/dev/null || { log "$tool is still missing after apt-get install"; exit 1; }
done
log "ready in $((SECONDS - start)) s: $(dpkg-query -W -f='krita ${Version}' krita 2>/dev/null || echo krita)"
