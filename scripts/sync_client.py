"""Copy plugins/common/stylelayer_client.py into both plug-ins, byte for byte.

Krita and GIMP each load plug-ins from their own folder, so each ships its own copy of the client; this is the
only way those copies are written (tests/protocol/test_client_copies.py fails when they drift).
Usage: python scripts/sync_client.py [--check]   (--check: report drift, exit 1, write nothing)
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "plugins" / "common" / "stylelayer_client.py"
COPIES = (
    REPO / "plugins" / "krita" / "stylelayer_krita" / "stylelayer_client.py",
    REPO / "plugins" / "gimp" / "stylelayer" / "stylelayer_client.py",
)


def stale_copies() -> list[Path]:
    data = SOURCE.read_bytes()
    return [copy for copy in COPIES if not copy.is_file() or copy.read_bytes() != data]


def main(argv: list[str]) -> int:
    stale = stale_copies()
    if "--check" in argv:
        for copy in stale:
            print(f"out of date: {copy.relative_to(REPO)} (run python scripts/sync_client.py)")
        return 1 if stale else 0
    data = SOURCE.read_bytes()
    for copy in stale:
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(data)
        print(f"updated {copy.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
