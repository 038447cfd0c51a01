"""The style library: painters' favourite style images kept on disk, addressed by generated ids.

An id is 16 lowercase hex digits made by the server; anything else is refused before it gets near the
filesystem, and file names are built from the validated id only, so no request can name a path.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

from PIL import Image

from ..core.imaging import encode_png

STYLE_ID = re.compile(r"[0-9a-f]{16}")
MAX_NAME = 100
THUMBNAIL_SIDE = 256


class StyleNotFound(KeyError):
    """No style with that id (or the id is not even well formed)."""


class StyleLibrary:
    """Styles stored as `<id>.png` (the image), `<id>.thumb.png` and `<id>.json` (name, size, date)."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            entries = []
            for meta in sorted(self.directory.glob("*.json")):
                if STYLE_ID.fullmatch(meta.stem) and (self.directory / f"{meta.stem}.png").is_file():
                    entries.append(self._read_meta(meta.stem))
        return sorted(entries, key=lambda e: (e["created"], e["id"]))

    def add(self, name: str, image: Image.Image) -> dict[str, Any]:
        name = clean_name(name)
        style_id = secrets.token_hex(8)
        thumb = image.copy()
        thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        meta = {
            "id": style_id,
            "name": name,
            "width": image.width,
            "height": image.height,
            "created": time.time(),
        }
        with self._lock:
            _write_atomic(self.directory / f"{style_id}.png", encode_png(image))
            _write_atomic(self.directory / f"{style_id}.thumb.png", encode_png(thumb))
            _write_atomic(self.directory / f"{style_id}.json", json.dumps(meta).encode())  # last: marks it complete
        return meta

    def image(self, style_id: str) -> Image.Image:
        path = self._path(style_id, ".png")
        with Image.open(path) as img:
            img.load()
            return img

    def png(self, style_id: str) -> bytes:
        """The stored image file itself (a job keeps a copy, so deleting the style cannot break a queued job)."""
        return self._path(style_id, ".png").read_bytes()

    def thumbnail(self, style_id: str) -> bytes:
        return self._path(style_id, ".thumb.png").read_bytes()

    def delete(self, style_id: str) -> None:
        self._path(style_id, ".json")
        with self._lock:
            for suffix in (".json", ".png", ".thumb.png"):
                (self.directory / f"{style_id}{suffix}").unlink(missing_ok=True)

    def _path(self, style_id: str, suffix: str) -> Path:
        if not isinstance(style_id, str) or not STYLE_ID.fullmatch(style_id):
            raise StyleNotFound(style_id)
        path = self.directory / f"{style_id}{suffix}"
        if not path.is_file() or not (self.directory / f"{style_id}.json").is_file():
            raise StyleNotFound(style_id)
        return path

    def _read_meta(self, style_id: str) -> dict[str, Any]:
        return json.loads((self.directory / f"{style_id}.json").read_text())


def clean_name(name: str) -> str:
    """A display name: printable characters only, trimmed, 1 to MAX_NAME characters."""
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if not name:
        raise ValueError("a style needs a non-empty name")
    return name[:MAX_NAME]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
