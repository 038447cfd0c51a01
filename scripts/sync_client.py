"""Copy the shared plug-in modules in plugins/common into both plug-ins, byte for byte.

Krita and GIMP each load plug-ins from their own folder, so each ships its own copy of the HTTP client
(stylelayer_client.py) and of the shared pure logic (stylelayer_plugin_logic.py); this is the only way those
copies are written (tests/protocol/test_client_copies.py fails when they drift).
Usage: python scripts/sync_client.py [--check]   (--check: report drift, exit 1, write nothing)
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMON = REPO / "plugins" / "common"
SHARED_FILES = ("stylelayer_client.py", "stylelayer_plugin_logic.py")
PLUGIN_DIRS = (
    REPO / "plugins" / "krita" / "stylelayer_krita",
    REPO / "plugins" / "gimp" / "stylelayer",
)
# (source, copy) for every shared file in every plug-in folder
COPIES = tuple((COMMON / name, folder / name) for name in SHARED_FILES for folder in PLUGIN_DIRS)


def stale_copies() -> list[tuple[Path, Path]]:
    return [(src, copy) for src, copy in COPIES if not copy.is_file() or copy.read_bytes() != src.read_bytes()]


def main(argv: list[str]) -> int:
    stale = stale_copies()
    if "--check" in argv:
        for _, copy in stale:
            print(f"out of date: {copy.relative_to(REPO)} (run python scripts/sync_client.py)")
        return 1 if stale else 0
    for src, copy in stale:
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(src.read_bytes())
        print(f"updated {copy.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
