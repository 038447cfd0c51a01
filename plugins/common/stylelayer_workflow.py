"""The style-transfer workflow both plug-ins run, without a host: connect, estimate, run, cancel, and what the new
layer is to be. The Krita and GIMP adapters keep only their host's calls (read the layer's pixels and selection,
create the layer, show dialogs), so a change here reaches both, and they cannot drift apart again.

    client = connect(url, token)                     # the typed token, else the token file, else $STYLELAYER_TOKEN
    line = estimate(client, width, height, params)   # before Apply
    result = run_job(client, content_png, ...)       # probe, submit, poll progress and previews, wait; cancellable
    check_result(result.png, width, height)          # then the host decodes it and
    place = placement(label, sibling_names, target)  # adds a layer named place.name above sibling place.above

A host without a Qt thread of its own (GIMP) runs the job on a JobRunner and polls it from its main loop.

Standard library only, Python 3.8: it runs in Krita's and GIMP's own Python. `stylelayer install-plugin`
copies it from plugins/common into each plug-in's folder.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from stylelayer_client import StylelayerClient, StylelayerError
from stylelayer_image import insert_above, png_size, style_layer_name
from stylelayer_messages import PluginError, error_message
from stylelayer_params import check_server_url
from stylelayer_settings import abandon_after_s, load_token
from stylelayer_status import estimate_text, progress_fraction, progress_text

TOKEN_ENV = "STYLELAYER_TOKEN"  # what the server reads its token from; a script may set it for the plug-in too
NO_STYLE = "Choose a style image (a file, or one from the server's library)."


# ---- connect ---------------------------------------------------------------------------------------------------
def resolve_token(token: str | None, environ: Mapping[str, str] | None = None, path: str | None = None) -> str | None:
    """The token to send: the one typed (the dialog's field, GIMP's argument), else the plug-ins' token file, else
    $STYLELAYER_TOKEN; None when there is none (a local server needs none)."""
    env = os.environ if environ is None else environ
    return (token or "").strip() or load_token(path) or env.get(TOKEN_ENV, "").strip() or None


def connect(
    url: str,
    token: str | None = None,
    timeout: float = 30,
    managed: Callable[[], tuple[str, str]] | None = None,
) -> Any:
    """The HTTP client for the server at `url` (checked: PluginError when it is no http(s) address).

    `managed` (the plug-in's own server): returns its (url, token), starting it if needed; then the client is a
    LazyClient, which calls it on its first request, on the thread that makes it (never the GUI's).
    """
    if managed is not None:
        return LazyClient(lambda: connect(*managed(), timeout=timeout))
    return StylelayerClient(check_server_url(url), token=resolve_token(token), timeout=timeout)


class LazyClient:
    """A client made by `factory` on its first request; what the factory raises reaches that request's caller."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._client: Any = None
        self._lock = threading.Lock()

    def _real(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    def __getattr__(self, name: str) -> Any:
        if name in ("base_url", "token", "timeout"):
            return getattr(self._real(), name)
        return lambda *args, **kwargs: getattr(self._real(), name)(*args, **kwargs)


# ---- estimate --------------------------------------------------------------------------------------------------
def estimate(client: Any, width: int, height: int, params: dict) -> str:
    """The line the dialog shows before Apply: how long a run of `params` on a width x height region would take
    on this server (its /v1/estimate), or why it would not fit. Blocking: call it off the GUI thread."""
    return estimate_text(client.estimate(width, height, params))


def estimate_failed(exc: BaseException) -> str:
    """The estimate line when the server could not be asked."""
    return "No estimate: " + error_message(exc)


# ---- run and cancel --------------------------------------------------------------------------------------------
class JobResult(NamedTuple):
    png: bytes  # the result, the size of the region sent
    loss_png: bytes | None  # the loss curves, when asked for


class LossFollower:
    """After each poll, fetches the job's new loss points (GET .../losses?since=N) for a live curve.

    The curve is an extra: if the server cannot give it (an older server without the route), following stops
    and the job goes on.
    """

    def __init__(self, client: Any, on_losses: Callable[[list], None]):
        self.client, self.on_losses = client, on_losses
        self.since = 0
        self.stopped = False

    def __call__(self, status: dict) -> None:
        if self.stopped or status.get("state") == "queued" or not status.get("id"):
            return
        try:
            page = self.client.losses(status["id"], self.since)
        except StylelayerError:
            self.stopped = True
            return
        if page["points"]:
            self.since = page["next"]
            self.on_losses(page["points"])


def run_job(
    client: Any,
    content_png: bytes,
    style_png: bytes | None = None,
    style_id: str | None = None,
    params: dict | None = None,
    on_progress: Callable[[dict, bytes | None], None] | None = None,  # (status, preview PNG)
    should_cancel: Callable[[], bool] | None = None,
    on_losses: Callable[[list], None] | None = None,
    loss_plot: bool = False,
    regions: Sequence[tuple] = (),
) -> JobResult:
    """The server job, blocking, touching no host object (it may run on a worker thread).

    The server is checked first (client.probe: another web server, a wrong token or version are told as such
    before the layer is uploaded). The job asks the server to cancel it when the plug-in stops polling (the host
    was closed, or killed the plug-in: GIMP's progress-bar Cancel does). `should_cancel()` True cancels it on the
    server (the client raises JobCancelled). on_losses(points) gets each batch of new loss points; `loss_plot`
    fetches the loss curves PNG at the end. `regions`: a style per region (stylelayer_regions.region_form);
    with them the job's own style is optional (what no region covers then keeps the layer's look).
    """
    if style_png is None and not style_id and not regions:
        raise PluginError(NO_STYLE)
    client.probe()
    follow = LossFollower(client, on_losses) if on_losses is not None else None
    job: dict = {}

    def progress(status: dict, preview: bytes | None = None) -> None:
        job["id"] = status.get("id") or job.get("id")
        if follow is not None:
            follow(status)
        if on_progress is not None:
            on_progress(status, preview)

    png = client.run_job(
        content_png,
        style_png=style_png,
        style_id=style_id,
        params=params,
        on_progress=progress,
        should_cancel=should_cancel,
        abandon_after=abandon_after_s(),
        regions=regions,
    )
    if not isinstance(png, (bytes, bytearray)):
        raise PluginError("The server returned no image.")
    return JobResult(bytes(png), client.loss_plot(job["id"]) if loss_plot else None)


def is_cancelled(exc: BaseException | None) -> bool:
    """True for the client's JobCancelled: the painter's Cancel, which is no failure to report."""
    return exc is not None and any(cls.__name__ == "JobCancelled" for cls in type(exc).__mro__)


class JobRunner:
    """Runs `work(on_progress, should_cancel)` (e.g. a run_job call) on a thread; the caller's thread polls it.

    For a host whose API may only be called from its main thread and that has no thread signals of its own
    (GIMP): it reads `fraction` and `text` and calls `cancel()`. `title` starts each progress line.
    """

    def __init__(self, work: Callable[[Callable[..., None], Callable[[], bool]], Any], title: str = ""):
        self._work = work
        self._title = title
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._fraction: float | None = None
        self._text = progress_text(None, title)
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="stylelayer-job", daemon=True)

    def start(self) -> JobRunner:
        self._thread.start()
        return self

    def _on_progress(self, status: dict, _preview: bytes | None = None) -> None:
        with self._lock:
            fraction = progress_fraction(status)
            if fraction is not None:
                self._fraction = fraction
            self._text = progress_text(status, self._title)

    def _run(self) -> None:
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


# ---- insert ----------------------------------------------------------------------------------------------------
class Placement(NamedTuple):
    name: str  # the new layer's name: "Style: <label>", unique among its siblings
    above: int  # the index (among the siblings, bottom first) of the layer the new one goes directly above


def check_result(png: bytes, width: int, height: int) -> None:
    """PluginError unless `png` is a PNG of the region's size (the host then decodes it)."""
    got = png_size(png)
    if got != (width, height):
        raise PluginError(f"The server sent back a {got[0]}x{got[1]} image for a {width}x{height} input.")


def placement(label: str, names: list[str], target: int) -> Placement:
    """Where the result of a run on layer `target` goes and what it is called, given the names of the target's
    siblings bottom to top: directly above the target or above the results earlier runs stacked on it (the
    newest is on top, where the painter sees it)."""
    return Placement(style_layer_name(label, set(names)), insert_above(names, target))
