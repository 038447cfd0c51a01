"""/v1/jobs and /v1/stylize: submit a job, follow it, fetch its preview, result and loss curves, cancel it.

The routes only parse, validate and enqueue; the workers of `job_queue.JobQueue` run the jobs.
`job_json` is the one mapping from a job to the JSON clients see.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request
from PIL import Image

from ..core.engine import MissingInput, check_inputs
from ..core.params import ParamError, StyleParams
from ..core.plot import loss_plot_png
from ..core.regions import Region, RegionError, size_notes
from ..limits import MAX_REGIONS, MAX_STYLES
from .errors import ApiError, check_form_fields
from .estimate import progress_and_eta
from .images import load_upload
from .job import DONE, FAILED, QUEUED, RUNNING, Job, LossPoint, progress_json
from .job_queue import EngineUnavailable, JobQueue, QueueFull
from .job_store import StorageError
from .state import server_state
from .style_library import StyleNotFound

JOB_ID = re.compile(r"[0-9a-f]{32}")
MAX_PREVIEW_EVERY = 10_000
MAX_ABANDON_AFTER = 86_400  # seconds
SYNC_POLL_S = 0.2  # how often a waiting /v1/stylize checks that its caller is still connected
CLIENT_HEADER = "X-Stylelayer-Client"  # a secret the client makes up: /v1/info lists the jobs sent with it
CLIENT_KEY = re.compile(r"[A-Za-z0-9._~-]{16,128}")
NOTES_HEADER = "X-Stylelayer-Notes"  # what the server did with a job's input that the caller should know
REGION_FIELD = re.compile(r"region[0-9]+_(mask|style|style_id)")
# The engine says which image a job lacks; the API says which form field gives it.
MISSING_IMAGE_MESSAGES = {
    "content": "a 'content' image file is required (texture mode may give params.output_size instead)",
    "style": "a 'style' image file or a 'style_id' is required",
}

jobs = Blueprint("jobs", __name__, url_prefix="/v1")
log = logging.getLogger("stylelayer.api")


@jobs.post("/jobs")
def submit_job() -> tuple[Response, int, dict[str, str]]:
    job, notes = _enqueue()
    headers = {"Location": f"/v1/jobs/{job.id}", **_notes_header(notes)}
    return jsonify(job_json(job, server_state().queue)), 202, headers


@jobs.get("/jobs/<job_id>")
def job_status(job_id: str) -> Response:
    return jsonify(job_json(_find_job(job_id), server_state().queue))


@jobs.get("/jobs/<job_id>/preview")
def job_preview(job_id: str) -> Response:
    job = _find_job(job_id)
    png = server_state().queue.preview_png(job)
    if png is None:
        raise ApiError(404, "no_preview", "no preview yet: previews appear every few iterations while a job runs")
    return _png(png, job)


@jobs.get("/jobs/<job_id>/result")
def job_result(job_id: str) -> Response:
    job = _find_job(job_id)
    png = server_state().queue.result_png(job)
    if png is None:
        raise _not_done(job)
    return _png(png, job)


@jobs.get("/jobs/<job_id>/losses")
def job_losses(job_id: str) -> Response:
    """Every iteration's losses (content, style, tv, total), or only those after iteration `since`."""
    job = _find_job(job_id)
    since = _parse_int(request.args.get("since"), "since", 0, 0, 10**9)
    points = server_state().queue.losses(job, since)
    return jsonify(
        {
            "id": job.id,
            "state": job.state,
            "since": since,
            "next": points[-1][0] if points else since,
            "points": [{"iteration": iteration, **losses} for iteration, losses in points],
        }
    )


@jobs.get("/jobs/<job_id>/losses.png")
def job_loss_plot(job_id: str) -> Response:
    """The loss curves drawn as the CLI's --loss-plot draws them (log scale, one line per term)."""
    job = _find_job(job_id)
    points: list[LossPoint] = server_state().queue.losses(job)
    png = loss_plot_png([losses for _, losses in points])
    return Response(png, mimetype="image/png", headers={"X-Stylelayer-Job": job.id, "Cache-Control": "no-store"})


@jobs.delete("/jobs/<job_id>")
@jobs.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    _find_job(job_id)
    queue = server_state().queue
    job = queue.cancel(job_id)
    if job is None:  # expired between the two look-ups
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    return jsonify(job_json(job, queue))


@jobs.post("/stylize")
def stylize_sync() -> Response:
    """Run a job and answer with its PNG: one request for curl and scripts (occupies one HTTP thread).

    The job ends with its caller: when the client disconnects (waitress reports it, see http_server.py) the job is
    cancelled, so an abandoned request neither keeps the worker busy nor holds this thread to the end.
    """
    state = server_state()
    job, notes = _enqueue(sync=True)
    client_gone = request.environ.get("waitress.client_disconnected", lambda: False)
    deadline = time.monotonic() + state.config["sync_timeout"]
    while not job.ended.wait(SYNC_POLL_S):
        if client_gone():
            state.queue.cancel(job.id)
            log.info("job %s cancelled: its /v1/stylize caller disconnected", job.id)
            raise ApiError(409, "job_cancelled", f"job {job.id} was cancelled: the client disconnected")
        if time.monotonic() > deadline:
            state.queue.cancel(job.id)
            raise ApiError(
                504, "timeout", f"the job took longer than {state.config['sync_timeout']} s and was cancelled"
            )
    png = state.queue.result_png(job)
    if png is None:
        raise _not_done(job, sync=True)
    response = _png(png, job)
    response.headers.update(_notes_header(notes))
    return response


def job_json(job: Job, queue: JobQueue) -> dict[str, Any]:
    """A job as clients see it (docs/openapi.yaml, schema Job): every field of the engine's latest progress
    (`job.progress_json`), then the job's own.

    `progress` and `eta_s` count work, not iterations: a finer level's iteration costs about four coarser ones.
    `total` counts the iterations of all levels as soon as the job is planned (before: those it asked for).
    """
    p = job.progress
    progress = eta = None
    if job.state == RUNNING and p.iteration > 0 and job.cost is not None:
        progress, eta = progress_and_eta(job.cost, p.iteration, p.level, p.tile, p.tiles, p.elapsed)
    elif job.state == RUNNING and p.iteration > 0 and p.total:  # an engine that could not plan the job
        progress = p.iteration / p.total
        eta = p.elapsed / p.iteration * (p.total - p.iteration)
    elif job.state == DONE:
        progress, eta = 1.0, 0.0
    return {
        "id": job.id,
        "state": job.state,
        **progress_json(p),
        "total": p.total or (sum(n for _, n in job.cost.levels) if job.cost else job.params.iterations),
        "progress": None if progress is None else round(progress, 4),
        "eta_s": None if eta is None else round(eta, 2),
        "queue_position": queue.queue_position(job) if job.state == QUEUED else None,
        "preview_iteration": job.preview_iteration,
        "seed": job.seed,
        "restarts": job.restarts,
        "abandon_after": job.abandon_after,
        "error": job.error,
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "params": job.params.to_dict(),
    }


def _enqueue(sync: bool = False) -> tuple[Job, list[str]]:
    """The job queued, and notes for its caller (a region mask stretched over the content)."""
    state = server_state()
    if request.mimetype != "multipart/form-data":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send multipart/form-data: a 'content' file, 'style' file(s) or 'style_id', and 'params' JSON",
        )
    check_form_fields()
    owner = owner_of()
    params = _parse_params(request.form.get("params", "{}"))
    preview_every = _parse_int(
        request.form.get("preview_every"),
        "preview_every",
        state.config["preview_every"],
        0,
        MAX_PREVIEW_EVERY,
    )
    abandon_after = _parse_int(request.form.get("abandon_after"), "abandon_after", 0, 0, MAX_ABANDON_AFTER)
    max_pixels = state.config["max_pixels"]
    inputs: list[tuple[str, bytes]] = []  # the files as received, kept by the job store until the job ends
    content = None
    upload = request.files.get("content")
    if upload is not None:
        data = upload.read()
        content = load_upload(data, "content", max_pixels)
        inputs.append(("content", data))
    styles = []
    for upload in request.files.getlist("style"):
        data = upload.read()
        styles.append(load_upload(data, "style", max_pixels))
        inputs.append((f"style{len(styles) - 1}", data))
    for style_id in request.form.getlist("style_id"):
        styles.append(_library_style(style_id, "style_id"))
        inputs.append((f"style{len(styles) - 1}", state.library.png(style_id)))
    if len(styles) > MAX_STYLES:
        raise ApiError(400, "too_many_styles", f"at most {MAX_STYLES} style images per job", field="style")
    regions = _regions(max_pixels, inputs)
    _check_inputs(content, styles, params, regions)
    size = content.size if content is not None else params.output_size
    notes = size_notes(regions, size) if size is not None else []
    try:
        job = state.queue.submit(
            content,
            styles,
            params,
            preview_every,
            inputs,
            sync,
            abandon_after,
            client=request.remote_addr or "",
            owner=owner,
            regions=regions,
        )
        return job, notes
    except QueueFull as exc:
        retry = state.queue.retry_after()
        raise ApiError(
            429, "queue_full", f"the server is busy: {exc}; try again in {retry} s", headers={"Retry-After": str(retry)}
        ) from None
    except EngineUnavailable as exc:
        raise ApiError(503, "engine_unavailable", str(exc)) from None
    except StorageError as exc:  # the data folder cannot be written or is nearly full (see /v1/health)
        raise ApiError(507, exc.code, f"the server cannot store a job now: {exc.message}") from None


def owner_of() -> str:
    """Who the caller is, for /v1/info's list of its own jobs: a digest of the X-Stylelayer-Client key it made
    up ('' without one: such a caller's jobs are listed to nobody). The key itself is never stored."""
    key = request.headers.get(CLIENT_HEADER)
    if key is None:
        return ""
    if not CLIENT_KEY.fullmatch(key):
        raise ApiError(
            400, "bad_request", f"{CLIENT_HEADER}: 16 to 128 letters, digits or ._~- (a random key the client keeps)"
        )
    return hashlib.sha256(key.encode()).hexdigest()


def _library_style(style_id: str, field: str) -> Image.Image:
    try:
        return server_state().library.image(style_id)
    except StyleNotFound:
        raise ApiError(404, "style_not_found", f"no style {style_id!r} in the library", field=field) from None


def _regions(max_pixels: int, inputs: list[tuple[str, bytes]]) -> list[Region]:
    """Regions from the form: region1_mask with region1_style file(s) and/or region1_style_id(s), then region2_...
    (numbered from 1 without gaps); each file is added to `inputs` as the store keeps it."""
    fields = {*request.files, *request.form}
    regions: list[Region] = []
    for number in range(1, MAX_REGIONS + 2):
        prefix = f"region{number}_"
        if not any(name.startswith(prefix) for name in fields):
            break
        if number > MAX_REGIONS:
            raise ApiError(400, "too_many_regions", f"at most {MAX_REGIONS} regions per job", field=f"{prefix}mask")
        upload = request.files.get(f"{prefix}mask")
        if upload is None:
            raise ApiError(
                400, "missing_field", f"region {number} needs a mask: a {prefix}mask file", field=f"{prefix}mask"
            )
        data = upload.read()
        mask = load_upload(data, f"{prefix}mask", max_pixels)
        inputs.append((f"{prefix}mask", data))
        styles: list[Image.Image] = []
        for style in request.files.getlist(f"{prefix}style"):
            data = style.read()
            styles.append(load_upload(data, f"{prefix}style", max_pixels))
            inputs.append((f"{prefix}style{len(styles) - 1}", data))
        for style_id in request.form.getlist(f"{prefix}style_id"):
            styles.append(_library_style(style_id, f"{prefix}style_id"))
            inputs.append((f"{prefix}style{len(styles) - 1}", server_state().library.png(style_id)))
        if not styles:
            raise ApiError(
                400,
                "missing_field",
                f"region {number} needs a style: a {prefix}style file or a {prefix}style_id",
                field=f"{prefix}style",
            )
        if len(styles) > MAX_STYLES:
            raise ApiError(400, "too_many_styles", f"at most {MAX_STYLES} styles per region", field=f"{prefix}style")
        regions.append(Region(mask, tuple(styles)))
    used = {f"region{n}_{kind}" for n in range(1, len(regions) + 1) for kind in ("mask", "style", "style_id")}
    stray = sorted(name for name in fields if REGION_FIELD.fullmatch(name) and name not in used)
    if stray:
        raise ApiError(
            400, "missing_field", f"{stray[0]}: regions are numbered region1, region2, ... without gaps", field=stray[0]
        )
    return regions


def _notes_header(notes: list[str]) -> dict[str, str]:
    return {NOTES_HEADER: "; ".join(notes)} if notes else {}


def _check_inputs(
    content: Image.Image | None, styles: list[Image.Image], params: StyleParams, regions: list[Region]
) -> None:
    """The engine's own check of a job, before it is queued, as a 400 naming the field to fix."""
    try:
        check_inputs(content, styles, params, regions)
    except MissingInput as exc:
        raise ApiError(400, "missing_field", MISSING_IMAGE_MESSAGES[exc.image], field=exc.image) from None
    except ParamError as exc:
        raise ApiError(400, "bad_param", str(exc), field=exc.field) from None
    except RegionError as exc:
        raise ApiError(400, "bad_region", str(exc), field=f"region{exc.number}_{exc.what}") from None
    except ValueError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None


def _parse_params(text: str) -> StyleParams:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays/objects ("[[[[...")
        raise ApiError(400, "bad_param", "params: not valid JSON", field="params") from None
    try:
        return StyleParams.from_json(data)
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
    job = server_state().queue.get(job_id) if JOB_ID.fullmatch(job_id) else None
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (finished jobs are forgotten after a while)")
    server_state().queue.touch(job)  # its client is alive: see abandon_after
    return job


def _not_done(job: Job, sync: bool = False) -> ApiError:
    if job.state in (QUEUED, RUNNING):
        return ApiError(409, "not_ready", f"job {job.id} is {job.state}; poll /v1/jobs/{job.id} until it is done")
    if job.state == FAILED and job.error is not None:
        status = 409
        if sync:
            status = {"bad_request": 400, "engine_unavailable": 503, "storage_full": 507, "storage_error": 507}.get(
                job.error["code"], 500
            )
        return ApiError(status, job.error["code"], job.error["message"])
    return ApiError(409, "job_cancelled", f"job {job.id} was cancelled")


def _png(data: bytes, job: Job) -> Response:
    headers = {"X-Stylelayer-Job": job.id, "Cache-Control": "no-store"}
    if job.seed is not None:
        headers["X-Stylelayer-Seed"] = str(job.seed)
    return Response(data, mimetype="image/png", headers=headers)
