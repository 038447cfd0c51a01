"""Pure logic of the GIMP plug-in: no `gi` import, so it is tested with plain Python.

GIMP-only parts live here: RGBA -> RGB, style image scaling, the progress title, the server job (checked first,
with the loss curves when asked), a job runner that keeps the HTTP polling off GIMP's main thread so the plug-in
can pump its UI and honour Cancel, the dialog's values remembered across runs (failed ones too), which preset the
arguments select, and the status log tests and bug reports read. What the Krita plug-in
shares (parameter limits and mapping, PNG encoding, layer naming, URL check, progress text, error messages) is in
`stylelayer_plugin_logic.py`, which the installer copies next to this file from plugins/common, and is
re-exported from here, so `logic.build_params` etc. work.
"""

from __future__ import annotations

import json
import os
import threading

# The logic shared with the Krita plug-in (copied into this folder, which is on sys.path), re-exported.
from stylelayer_plugin_logic import *  # noqa: F403
from stylelayer_plugin_logic import (
    PRESETS,
    PluginError,
    abandon_after_s,
    matching_preset,
    progress_fraction,
    progress_text,
)

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


def job_work(client, content_png: bytes, style_png: bytes, params: dict, loss_plot: bool = False):
    """The server job as JobRunner runs it: `work(on_progress, should_cancel)` returns (result PNG, loss curves
    PNG or None); the loss curves are fetched only when asked (GET /v1/jobs/{id}/losses.png).

    The server is checked first (another web server, a wrong token or version are told as such before the layer
    is uploaded), and the job asks the server to cancel it when the plug-in stops polling: GIMP's progress-bar
    Cancel kills the plug-in outright.
    """

    def work(on_progress, should_cancel):
        job = {}

        def progress(status, preview=None):
            job["id"] = status.get("id")
            on_progress(status, preview)

        client.probe()
        result = client.run_job(
            content_png,
            style_png=style_png,
            params=params,
            on_progress=progress,
            should_cancel=should_cancel,
            abandon_after=abandon_after_s(),
        )
        return result, client.loss_plot(job["id"]) if loss_plot else None

    return work


def save_loss_plot(png: bytes, path: str) -> None:
    """Write the loss curves PNG; PluginError naming the file when it cannot be written."""
    try:
        with open(path, "wb") as out:
            out.write(png)
    except OSError as exc:
        raise PluginError(
            f"the new layer was added, but the loss curves could not be saved to {path}: {exc.strerror or exc}"
        ) from exc


class JobRunner:
    """Runs `work(on_progress, should_cancel)` in a thread; the caller's (GIMP main) thread polls it.

    GIMP's API is only called from the main thread: it reads `fraction`/`text` and calls `cancel()`.
    """

    def __init__(self, work):
        self._work = work
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._fraction: float | None = None
        self._text = PROGRESS_TITLE
        self.result = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="stylelayer-job", daemon=True)

    def start(self) -> JobRunner:
        self._thread.start()
        return self

    def _on_progress(self, status, _preview=None):
        with self._lock:
            fraction = progress_fraction(status)
            if fraction is not None:
                self._fraction = fraction
            self._text = progress_text(status, PROGRESS_TITLE)

    def _run(self):
        try:
            self.result = self._work(self._on_progress, self._cancel.is_set)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which reports it
            self.error = exc
        finally:
            self._done.set()

    @property
    def fraction(self) -> float | None:
        with self._lock:
            return self._fraction

    @property
    def text(self) -> str:
        with self._lock:
            return self._text

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float) -> bool:
        """True once the work has finished (successfully or not)."""
        return self._done.wait(timeout)
