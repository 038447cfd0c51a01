"""Pure logic of the GIMP plug-in: no `gi` import, so it is tested with plain Python.

GIMP-only parts live here: RGBA -> RGB, style image scaling, the progress title, the server job (with the loss
curves when asked) and a job runner that keeps the HTTP polling off GIMP's main thread so the plug-in can pump its
UI and honour Cancel. What the Krita plug-in
shares (parameter limits and mapping, PNG encoding, layer naming, URL check, progress text, error messages) is in
`stylelayer_plugin_logic.py`, which the installer copies next to this file from plugins/common, and is
re-exported from here, so `logic.build_params` etc. work.
"""

from __future__ import annotations

import threading

# The logic shared with the Krita plug-in (copied into this folder, which is on sys.path), re-exported.
from stylelayer_plugin_logic import *  # noqa: F403
from stylelayer_plugin_logic import PluginError, progress_fraction, progress_text

DEFAULT_ITERATIONS = 200
DEFAULT_SIZE = 512
PROGRESS_TITLE = "Neural style transfer"  # GIMP's progress bar names the operation: "<title>: iteration 3/200"


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
    PNG or None); the loss curves are fetched only when asked (GET /v1/jobs/{id}/losses.png)."""

    def work(on_progress, should_cancel):
        job = {}

        def progress(status, preview=None):
            job["id"] = status.get("id")
            on_progress(status, preview)

        result = client.run_job(
            content_png, style_png=style_png, params=params, on_progress=progress, should_cancel=should_cancel
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
        except BaseException as exc:  # handed to the main thread, which reports it
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
