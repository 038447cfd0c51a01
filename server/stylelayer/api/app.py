"""Flask app factory for API v1: routes, request guards and the mapping from jobs to JSON.

The app only parses, validates and enqueues; the single worker in `jobs.JobQueue` owns the engine. Every
route lives under /v1/ so a later incompatible API can sit beside it without breaking installed plug-ins.
"""

from __future__ import annotations

import hmac
import json
import re
import tempfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from PIL import Image

from .. import __version__
from ..engine import StyleEngine
from ..params import MAX_ITERATIONS, MAX_SIZE, MAX_STYLES, ParamError, StyleParams
from .errors import ApiError, register_error_handlers
from .images import load_upload
from .job_queue import DONE, FAILED, QUEUED, RUNNING, EngineUnavailable, Job, JobQueue, QueueFull
from .style_library import StyleLibrary, StyleNotFound

DEFAULT_CONFIG: dict[str, Any] = {
    "token": None,  # when set, every request needs "Authorization: Bearer <token>"
    "max_queue": 8,  # jobs waiting (not counting the running one) before submissions get 429
    "max_content_length": 50 * 1024 * 1024,  # bytes per request
    "max_pixels": 16_000_000,  # per uploaded image
    "styles_dir": None,  # None: a fresh temporary directory (tests); `stylelayer serve` passes a real one
    "preview_every": 10,  # default iterations between preview images; a job may ask for another value
    "keep_results": 32,  # finished jobs remembered...
    "result_ttl": 3600.0,  # ...for at most this many seconds
    "sync_timeout": 3600.0,  # POST /v1/stylize gives up (and cancels) after this many seconds
    "weights": "caffe",  # used only when create_app builds the engine itself
    "device": "auto",
}
JOB_ID = re.compile(r"[0-9a-f]{32}")
MAX_PREVIEW_EVERY = 10_000
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})

api = Blueprint("v1", __name__, url_prefix="/v1")


@dataclass
class ServerState:
    config: dict[str, Any]
    queue: JobQueue
    library: StyleLibrary


def create_app(config: dict[str, Any] | None = None, engine: Any = None) -> Flask:
    """Build the app. With `engine=None` a `StyleEngine` is loaded in the worker thread from config's
    weights/device, so the server answers health checks while VGG loads (a load failure is a 503)."""
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    unknown = sorted(set(cfg) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown server setting(s): {', '.join(unknown)}")
    if engine is not None:
        queue = JobQueue(
            engine=engine,
            max_queue=cfg["max_queue"],
            keep_results=cfg["keep_results"],
            result_ttl=cfg["result_ttl"],
        )
    else:
        queue = JobQueue(
            engine_factory=lambda: StyleEngine(weights=cfg["weights"], device=cfg["device"]),
            max_queue=cfg["max_queue"],
            keep_results=cfg["keep_results"],
            result_ttl=cfg["result_ttl"],
        )
    styles_dir = cfg["styles_dir"] or tempfile.mkdtemp(prefix="stylelayer-styles-")

    app = Flask("stylelayer.api", static_folder=None)  # an API: no /static route
    # Werkzeug would answer '/v1/jobs//result' with an HTML 308 redirect to '/v1/jobs/result' (another resource,
    # and not the JSON error shape); without merging, such paths are a JSON 404.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = cfg["max_content_length"]
    app.json.sort_keys = False
    app.extensions["stylelayer"] = ServerState(config=cfg, queue=queue, library=StyleLibrary(styles_dir))
    register_error_handlers(app)
    app.before_request(_guard)
    app.register_blueprint(api)
    return app


def _state() -> ServerState:
    return current_app.extensions["stylelayer"]


# ---- guards ------------------------------------------------------------------------------------------------
def _guard() -> None:
    """Token on every route when configured; state-changing requests from another web origin refused.

    A web page the painter visits could otherwise POST to 127.0.0.1 (browsers send such "simple" requests
    without preflight), so a foreign or `null` Origin, or a cross-site fetch, is rejected outright.
    """
    token = _state().config["token"]
    if not token and _host_name(request.host) not in LOOPBACK_NAMES:
        # Without a token the server is loopback-only; a foreign Host header means DNS rebinding (a web page whose
        # name now resolves to 127.0.0.1), which the Origin check below cannot catch because the origins match.
        raise ApiError(403, "bad_host", f"Host {request.host!r} is not a loopback name; use 127.0.0.1 or a --token")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(401, "unauthorized", "missing or wrong token: send 'Authorization: Bearer <token>'")
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    origin = request.headers.get("Origin")
    if origin is not None and (origin == "null" or _origin_host(origin) != request.host.lower()):
        raise ApiError(403, "cross_origin", f"requests from the web origin {origin!r} are not allowed")
    if request.headers.get("Sec-Fetch-Site", "same-origin") in ("cross-site", "same-site"):
        raise ApiError(403, "cross_origin", "cross-site requests are not allowed")


def _origin_host(origin: str) -> str | None:
    """host[:port] of an Origin header, None when it does not parse (e.g. 'http://[': urlsplit raises)."""
    try:
        return urlsplit(origin).netloc.lower()
    except ValueError:
        return None


def _host_name(host: str) -> str:
    """'127.0.0.1:8765' -> '127.0.0.1', '[::1]:8765' -> '::1'."""
    host = host.lower()
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


# ---- health and info ---------------------------------------------------------------------------------------
@api.get("/health")
def health() -> Response:
    queue = _state().queue
    if queue.engine_error is not None:
        raise ApiError(503, "engine_unavailable", queue.engine_error)
    return jsonify({"status": "ok", "version": __version__, "engine": queue.engine_state})


@api.get("/info")
def info() -> Response:
    state = _state()
    cfg, queue = state.config, state.queue
    engine = queue.engine if queue.engine_state == "ready" else None
    described = dict(engine.describe()) if engine is not None else {}
    return jsonify({
        "version": __version__,
        "api": 1,
        "engine": queue.engine_state,
        "engine_error": queue.engine_error,
        "device": described.get("device", cfg["device"]),
        "weights": described.get("weights", cfg["weights"]),
        "engine_info": described,
        "auth_required": bool(cfg["token"]),
        "limits": {
            "max_queue": cfg["max_queue"],
            "max_content_length": cfg["max_content_length"],
            "max_pixels": cfg["max_pixels"],
            "max_size": MAX_SIZE,
            "max_iterations": MAX_ITERATIONS,
            "max_styles": MAX_STYLES,
            "keep_results": cfg["keep_results"],
            "result_ttl_s": cfg["result_ttl"],
        },
        "defaults": StyleParams().to_dict(),
        "preview_every": cfg["preview_every"],
        "cache": engine.cache_stats() if engine is not None else None,
        "jobs": queue.counts(),
    })  # fmt: skip


# ---- jobs --------------------------------------------------------------------------------------------------
@api.post("/jobs")
def submit_job() -> tuple[Response, int, dict[str, str]]:
    job = _enqueue()
    return jsonify(_job_json(job)), 202, {"Location": f"/v1/jobs/{job.id}"}


@api.get("/jobs/<job_id>")
def job_status(job_id: str) -> Response:
    return jsonify(_job_json(_find_job(job_id)))


@api.get("/jobs/<job_id>/preview")
def job_preview(job_id: str) -> Response:
    job = _find_job(job_id)
    png = job.result_png if job.state == DONE else job.preview_png
    if png is None:
        raise ApiError(404, "no_preview", "no preview yet: previews appear every few iterations while a job runs")
    return _png(png, job)


@api.get("/jobs/<job_id>/result")
def job_result(job_id: str) -> Response:
    job = _find_job(job_id)
    if job.state != DONE or job.result_png is None:
        raise _not_done(job)
    return _png(job.result_png, job)


@api.delete("/jobs/<job_id>")
@api.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    _find_job(job_id)
    job = _state().queue.cancel(job_id)
    if job is None:  # expired between the two look-ups
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    return jsonify(_job_json(job))


@api.post("/stylize")
def stylize_sync() -> Response:
    """Run a job and answer with its PNG: one request for curl and scripts (occupies one HTTP thread)."""
    state = _state()
    job = _enqueue()
    if not job.ended.wait(state.config["sync_timeout"]):
        state.queue.cancel(job.id)
        raise ApiError(504, "timeout", f"the job took longer than {state.config['sync_timeout']} s and was cancelled")
    if job.state != DONE or job.result_png is None:
        raise _not_done(job, sync=True)
    return _png(job.result_png, job)


def _enqueue() -> Job:
    state = _state()
    if request.mimetype != "multipart/form-data":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send multipart/form-data: a 'content' file, 'style' file(s) or 'style_id', and 'params' JSON",
        )
    params = _parse_params(request.form.get("params", "{}"))
    preview_every = _parse_int(
        request.form.get("preview_every"),
        "preview_every",
        state.config["preview_every"],
        0,
        MAX_PREVIEW_EVERY,
    )
    max_pixels = state.config["max_pixels"]

    content = None
    upload = request.files.get("content")
    if upload is not None:
        content = load_upload(upload.read(), "content", max_pixels)
    elif not (params.mode == "texture" and params.output_size):
        raise ApiError(
            400,
            "missing_field",
            "a 'content' image file is required (texture mode may give params.output_size instead)",
            field="content",
        )

    styles = [load_upload(f.read(), "style", max_pixels) for f in request.files.getlist("style")]
    for style_id in request.form.getlist("style_id"):
        try:
            styles.append(state.library.image(style_id))
        except StyleNotFound:
            raise ApiError(404, "style_not_found", f"no style {style_id!r} in the library", field="style_id") from None
    if len(styles) > MAX_STYLES:
        raise ApiError(400, "too_many_styles", f"at most {MAX_STYLES} style images per job", field="style")
    if not styles and (params.effective_style_weight > 0 or params.init == "style"):
        raise ApiError(400, "missing_field", "a 'style' image file or a 'style_id' is required", field="style")
    try:
        params.blend_weights(max(1, len(styles)))
    except ParamError as exc:
        raise ApiError(400, "bad_param", str(exc), field=exc.field) from None

    try:
        return state.queue.submit(content, styles, params, preview_every)
    except QueueFull as exc:
        raise ApiError(429, "queue_full", f"the server is busy: {exc}; try again later") from None
    except EngineUnavailable as exc:
        raise ApiError(503, "engine_unavailable", str(exc)) from None


def _parse_params(text: str) -> StyleParams:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays/objects ("[[[[...")
        raise ApiError(400, "bad_param", "params: not valid JSON", field="params") from None
    try:
        return StyleParams.from_dict(data)
    except ParamError as exc:
        raise ApiError(400, "bad_param", str(exc), field=exc.field) from None


def _parse_int(text: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "bad_param", f"{name}: must be a whole number", field=name) from None
    if not lo <= value <= hi:
        raise ApiError(400, "bad_param", f"{name}: must be between {lo} and {hi}", field=name)
    return value


def _find_job(job_id: str) -> Job:
    job = _state().queue.get(job_id) if JOB_ID.fullmatch(job_id) else None
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (finished jobs are forgotten after a while)")
    return job


def _not_done(job: Job, sync: bool = False) -> ApiError:
    if job.state in (QUEUED, RUNNING):
        return ApiError(409, "not_ready", f"job {job.id} is {job.state}; poll /v1/jobs/{job.id} until it is done")
    if job.state == FAILED and job.error is not None:
        status = 409
        if sync:
            status = {"bad_request": 400, "engine_unavailable": 503}.get(job.error["code"], 500)
        return ApiError(status, job.error["code"], job.error["message"])
    return ApiError(409, "job_cancelled", f"job {job.id} was cancelled")


def _png(data: bytes, job: Job) -> Response:
    headers = {"X-Stylelayer-Job": job.id, "Cache-Control": "no-store"}
    if job.seed is not None:
        headers["X-Stylelayer-Seed"] = str(job.seed)
    return Response(data, mimetype="image/png", headers=headers)


def _job_json(job: Job) -> dict[str, Any]:
    queue = _state().queue
    eta = None
    if job.state == RUNNING and job.iteration > 0 and job.total:
        eta = round(job.elapsed / job.iteration * (job.total - job.iteration), 2)
    elif job.state == DONE:
        eta = 0.0
    return {
        "id": job.id,
        "state": job.state,
        "iteration": job.iteration,
        "total": job.total or job.params.iterations,
        "losses": job.losses,
        "elapsed_s": round(job.elapsed, 3),
        "eta_s": eta,
        "queue_position": queue.queue_position(job) if job.state == QUEUED else None,
        "preview_iteration": job.preview_iteration,
        "seed": job.seed,
        "error": job.error,
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "params": job.params.to_dict(),
    }


# ---- style library -----------------------------------------------------------------------------------------
@api.get("/styles")
def list_styles() -> Response:
    return jsonify({"styles": _state().library.entries()})


@api.post("/styles")
def add_style() -> tuple[Response, int, dict[str, str]]:
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data with an 'image' file and a 'name'")
    upload = request.files.get("image")
    if upload is None:
        raise ApiError(400, "missing_field", "an 'image' file is required", field="image")
    image: Image.Image = load_upload(upload.read(), "image", _state().config["max_pixels"])
    name = request.form.get("name") or upload.filename or ""
    try:
        meta = _state().library.add(name, image)
    except ValueError as exc:
        raise ApiError(400, "bad_param", str(exc), field="name") from None
    return jsonify(meta), 201, {"Location": f"/v1/styles/{meta['id']}/thumbnail"}


@api.get("/styles/<style_id>/thumbnail")
def style_thumbnail(style_id: str) -> Response:
    try:
        data = _state().library.thumbnail(style_id)
    except StyleNotFound:
        raise ApiError(404, "style_not_found", f"no style {style_id!r} in the library") from None
    return Response(data, mimetype="image/png")


@api.delete("/styles/<style_id>")
def delete_style(style_id: str) -> Response:
    try:
        _state().library.delete(style_id)
    except StyleNotFound:
        raise ApiError(404, "style_not_found", f"no style {style_id!r} in the library") from None
    return jsonify({"id": style_id, "deleted": True})
