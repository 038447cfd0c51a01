"""Install the Krita and GIMP plug-ins from this package into a user's host program."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

HOSTS = ("krita", "gimp")


def plugin_source(host: str) -> Path:
    """Folder holding `plugins/<host>`: the source checkout, else the copy bundled into a wheel."""
    if host not in HOSTS:
        raise ValueError(f"unknown host {host!r}; choose one of {', '.join(HOSTS)}")
    checkout = Path(__file__).resolve().parents[3] / "plugins" / host
    if checkout.is_dir():
        return checkout
    bundled = Path(str(resources.files("stylelayer"))) / "_plugins" / host
    if bundled.is_dir():
        return bundled
    raise FileNotFoundError(f"the {host} plug-in files are not part of this installation (looked in {checkout})")
