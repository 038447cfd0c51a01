"""Pure logic of the GIMP plug-in: no `gi` import, so it is tested with plain Python.

GIMP-only parts live here: RGBA -> RGB, style image scaling, the progress title, the loss curves file, the
dialog's values remembered across runs (failed ones too), which preset the arguments select, and the status log
tests and bug reports read. What the Krita plug-in shares (the workflow, parameters, PNG, selection masks, status
lines, messages, the token) is in the stylelayer_*.py modules that the installer copies next to this file from
plugins/common.
"""

from __future__ import annotations

import json
import os

from stylelayer_messages import PluginError
from stylelayer_params import PRESETS, matching_preset

DEFAULT_ITERATIONS = 200
DEFAULT_SIZE = 512
PROGRESS_TITLE = "Neural style transfer"  # GIMP's progress bar names the operation: "<title>: iteration 3/200"
CUSTOM = "custom"  # the preset argument's value for "use size and iterations as given"
LAST_VALUES_FILE = "stylelayer-last-values.json"  # in GIMP's own folder (Gimp.directory())
REMEMBERED = (
    "style-file",
    "preset",
    "iterations",
    "style-strength",
    "preserve-colors",
    "size",
    "seed",
    "server-url",
)  # not the token: it has its own file (token_path), readable by the user only
LAST_SEED = "last-seed"  # the variation the last run painted, which the dialog offers to keep
OLD_TOKEN = "server-token"  # where versions before the token file kept it: moved out (migrate_token)
LOG_ENV = "STYLELAYER_GIMP_LOG"  # a file the plug-in appends its status lines to (tests, bug reports)


def preset_size_iterations(preset: str, size: int, iterations: int) -> tuple:
    """(size, iterations) a run uses: a preset's own values, or the arguments as given for "custom"."""
    return PRESETS.get(preset, (size, iterations))


def preset_of(size: int, iterations: int) -> str:
    """The preset the dialog shows for these values: the matching one, else "custom"."""
    return matching_preset(size, iterations) or CUSTOM


def load_last_values(path: str) -> dict:
    """The dialog's values of the last run, even a failed one ({} when there is none or it is unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except (OSError, ValueError):
        return {}
    keep = (*REMEMBERED, LAST_SEED, OLD_TOKEN)
    return {k: v for k, v in values.items() if k in keep} if isinstance(values, dict) else {}


def save_last_values(path: str, values: dict) -> None:
    """Remember the dialog's values and the last variation for the next run (GIMP keeps them only after a
    success). Readable by the user only, though the token is no longer among them."""
    data = json.dumps({k: v for k, v in values.items() if k in (*REMEMBERED, LAST_SEED)}, indent=1)
    fresh = path + ".new"
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(data)
    os.replace(fresh, path)  # a new file: its mode is 0600 even where an older one was readable by others


def log_status(text: str, environ=None) -> None:
    """Append a status line ("status: …", "estimate: …") to $STYLELAYER_GIMP_LOG when it is set."""
    path = (os.environ if environ is None else environ).get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text.replace("\n", " ") + "\n")


def rgba_to_rgb(pixels: bytes) -> bytes:
    """Drop every fourth byte (alpha) of RGBA pixel data."""
    out = bytearray(len(pixels) // 4 * 3)
    out[0::3] = pixels[0::4]
    out[1::3] = pixels[1::4]
    out[2::3] = pixels[2::4]
    return bytes(out)


def scaled_to_fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down (never up) so the longer side is at most `max_side`."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    factor = max_side / longest
    return max(1, round(width * factor)), max(1, round(height * factor))


def save_loss_plot(png: bytes, path: str) -> None:
    """Write the loss curves PNG; PluginError naming the file when it cannot be written."""
    try:
        with open(path, "wb") as out:
            out.write(png)
    except OSError as exc:
        raise PluginError(
            f"the new layer was added, but the loss curves could not be saved to {path}: {exc.strerror or exc}"
        ) from exc
