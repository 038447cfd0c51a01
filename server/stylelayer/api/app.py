"""Flask app factory for API v1: one blueprint per resource, the request guard, and the JSON error shape.

Every route lives under /v1/ so a later incompatible API can sit beside it without breaking installed plug-ins.
"""

from __future__ import annotations

import tempfile
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from ..core.engine import StyleEngine
from ..limits import MAX_FORM_TEXT_BYTES, MAX_PIXELS, MAX_UPLOAD_BYTES
from .errors import register_error_handlers
from .estimate_routes import estimate
from .guard import check_request
from .health_routes import health
from .job_queue import JobQueue
from .job_routes import jobs
from .job_store import MIN_FREE_BYTES, JobStore
from .state import ServerState
from .style_library import StyleLibrary
from .style_routes import styles

DEFAULT_CONFIG: dict[str, Any] = {
    "token": None,  # when set, every request needs "Authorization: Bearer <token>"
    "max_queue": 8,  # jobs waiting (not counting the running one) before submissions get 429
    "max_content_length": MAX_UPLOAD_BYTES,  # bytes per request, refused by Content-Length before reading
    "max_pixels": MAX_PIXELS,  # per uploaded image
    "styles_dir": None,  # None: a fresh temporary directory (tests); `stylelayer serve` passes a real one
    "data_dir": None,  # the job store (job_store.py); None: a temporary directory deleted at stop (tests)
    "min_free_bytes": MIN_FREE_BYTES,  # less free in data_dir: /v1/health says degraded, submissions get 507
    "preview_every": 10,  # default iterations between preview images; a job may ask for another value
    "keep_results": 100,  # finished jobs remembered (with their results, across restarts)...
    "result_ttl": 24 * 3600.0,  # ...for at most this many seconds...
    "result_bytes": 2 * 1024**3,  # ...and while their result files together fit in this many bytes
    "sync_timeout": 3600.0,  # POST /v1/stylize gives up (and cancels) after this many seconds
    "weights": "caffe",  # used only when create_app builds the engine itself
    "device": "auto",
    "max_memory": None,  # bytes the engine may use (None: from the free RAM/VRAM at each job); see memory.py
}


class OrderedJSONProvider(DefaultJSONProvider):
    """Answers keep the order of their fields as built (and documented), not sorted."""

    sort_keys = False


class ApiFlask(Flask):
    """OPTIONS answers 204 with `Allow` (no CORS), not Flask's empty text/html 200."""

    def make_default_options_response(self) -> Any:
        response = super().make_default_options_response()
        response.status_code = 204
        response.headers.pop("Content-Type", None)
        return response


def create_app(
    config: dict[str, Any] | None = None,
    engine: Any = None,
    workers: list[Any] | None = None,
    store: JobStore | None = None,
) -> Flask:
    """Build the app. With `engine=None` a `StyleEngine` is loaded in the worker thread from config's
    weights/device, so the server answers health checks while VGG loads (a load failure is a 503). `workers`
    (job_queue's worker interface, e.g. a `ray_workers.RayPool`'s) run the jobs instead of one in-process engine.
    `store`: the job store already opened (`stylelayer serve` checks the data folder before loading the model);
    by default it is opened here from config's data_dir (StoreError, StoreBusy when it cannot be used)."""
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    unknown = sorted(set(cfg) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown server setting(s): {', '.join(unknown)}")
    if store is None:
        store = JobStore(cfg["data_dir"], min_free=cfg["min_free_bytes"])
    store.min_free = cfg["min_free_bytes"]
    queue = JobQueue(
        engine=engine,
        engine_factory=None
        if engine is not None or workers is not None
        else lambda: StyleEngine(weights=cfg["weights"], device=cfg["device"], max_memory=cfg["max_memory"]),
        workers=workers,
        store=store,
        max_queue=cfg["max_queue"],
        keep_results=cfg["keep_results"],
        result_ttl=cfg["result_ttl"],
        result_bytes=cfg["result_bytes"],
        max_pixels=cfg["max_pixels"],
    )
    styles_dir = cfg["styles_dir"] or tempfile.mkdtemp(prefix="stylelayer-styles-")

    app = ApiFlask("stylelayer.api", static_folder=None)  # an API: no /static route
    # Werkzeug would answer '/v1/jobs//result' with an HTML 308 redirect to '/v1/jobs/result' (another resource,
    # and not the JSON error shape); without merging, such paths are a JSON 404.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = cfg["max_content_length"]
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_FORM_TEXT_BYTES  # each field's own limit: errors.check_form_fields
    app.json = OrderedJSONProvider(app)
    app.extensions["stylelayer"] = ServerState(config=cfg, queue=queue, library=StyleLibrary(styles_dir))
    register_error_handlers(app)
    app.before_request(check_request)  # on the app, not a blueprint: unknown paths need the token too
    for blueprint in (health, estimate, jobs, styles):
        app.register_blueprint(blueprint)
    return app
