"""What the plug-ins keep between runs and read from the environment: the token (its own file, readable by the
user only) and how long the server waits for a silent plug-in.

Standard library only, Python 3.8: it runs in Krita's and GIMP's own Python. `stylelayer install-plugin`
copies it from plugins/common into each plug-in's folder.
"""

from __future__ import annotations

import contextlib
import os

TOKEN_PLACEHOLDER = "remote server only"  # short: the field is narrow in both dialogs
TOKEN_FILE = "plugin-token"  # in the user's stylelayer settings folder (token_path), mode 0600
ABANDON_AFTER_S = 60  # the server cancels a job nobody has asked about for this long (the plug-in was killed)
ABANDON_AFTER_ENV = "STYLELAYER_ABANDON_AFTER"  # overrides it (a slow network: more; tests: less)


def abandon_after_s(environ=None) -> int:
    """Seconds without a poll after which the server cancels a plug-in's job: $STYLELAYER_ABANDON_AFTER (at least
    5) or ABANDON_AFTER_S."""
    text = (os.environ if environ is None else environ).get(ABANDON_AFTER_ENV, "")
    try:
        return max(5, int(text))
    except ValueError:
        return ABANDON_AFTER_S


# ---- the token -----------------------------------------------------------------------------------------
def token_path(environ=None) -> str:
    """The plug-ins' token file, shared by Krita and GIMP: stylelayer/plugin-token in the user's settings folder
    (%APPDATA% on Windows, else $XDG_CONFIG_HOME or ~/.config)."""
    env = os.environ if environ is None else environ
    if os.name == "nt" and env.get("APPDATA"):
        base = env["APPDATA"]
    else:
        base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return os.path.join(base, "stylelayer", TOKEN_FILE)


def load_token(path: str | None = None) -> str:
    """The stored token ("" when there is none or it cannot be read)."""
    try:
        with open(path or token_path(), encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def save_token(token: str, path: str | None = None) -> None:
    """Store the token readable by the user only (a 0600 file in a 0700 folder, replaced whole); "" removes it.
    Not in kritarc or GIMP's settings, which other users of the machine can read."""
    path = path or token_path()
    token = (token or "").strip()
    if not token:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        return
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fresh = path + ".new"
    with contextlib.suppress(FileNotFoundError):
        os.remove(fresh)  # O_EXCL below: never write into a file someone else prepared
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    os.replace(fresh, path)


def migrate_token(old: str, path: str | None = None) -> str:
    """The token to use, given one an older version kept in the host's settings (`old`, "" if none): it moves into
    the token file unless that already holds one. The caller then clears the old place."""
    current = load_token(path)
    if (old or "").strip() and not current:
        save_token(old, path)
        return old.strip()
    return current
