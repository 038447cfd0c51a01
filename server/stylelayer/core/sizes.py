"""Memory sizes as painters write them ('4GB', '512M') and as messages show them; no torch, so flags parse fast."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 2**10,
    "kib": 2**10,
    "m": 2**20,
    "mb": 2**20,
    "mib": 2**20,
    "g": 2**30,
    "gb": 2**30,
    "gib": 2**30,
    "t": 2**40,
    "tb": 2**40,
    "tib": 2**40,
}


def parse_size(text: str | int) -> int:
    """'4GB', '512M', '2.5GiB' or a number of bytes -> bytes (powers of 1024, as memory is sold to painters)."""
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(f"not a memory size: {text!r} (examples: 4GB, 512MB, 6G)")
        value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value < 256 * 2**20:
        raise ValueError(f"a memory budget of {format_size(value)} is too small to run VGG19; give at least 256MB")
    return value


def format_size(n: int | float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"
