"""/v1/health and /v1/info: is the server up, and what it runs, allows and defaults to."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from .. import __version__
from ..core.params import StyleParams
from ..limits import MAX_ITERATIONS, MAX_SIZE, MAX_STYLES
from .errors import ApiError
from .job_routes import owner_of
from .state import server_state

health = Blueprint("health", __name__, url_prefix="/v1")


@health.get("/health")
def get_health() -> Response:
    """ok, or degraded (200, with the reason) while the data folder cannot store jobs: submissions get 507 then."""
    queue = server_state().queue
    if queue.engine_error is not None:
        raise ApiError(503, "engine_unavailable", queue.engine_error)
    problem = queue.storage_problem()
    answer: dict[str, Any] = {
        "status": "ok" if problem is None else "degraded",
        "version": __version__,
        "engine": queue.engine_state,
    }
    if problem is not None:
        answer["reason"] = {"code": problem.code, "message": problem.message}
    return jsonify(answer)


@health.get("/info")
def get_info() -> Response:
    """What the server runs and allows; of the jobs, counts per state and only the caller's own ids (see owner_of):
    a job id is the capability to read and cancel a job."""
    state = server_state()
    cfg, queue = state.config, state.queue
    owner = owner_of()
    engine = queue.engine if queue.engine_state == "ready" else None
    described = dict(engine.describe()) if engine is not None else {}
    limits = {
        "max_queue": cfg["max_queue"],
        "max_content_length": cfg["max_content_length"],
        "max_pixels": cfg["max_pixels"],
        "max_size": MAX_SIZE,
        "max_iterations": MAX_ITERATIONS,
        "max_styles": MAX_STYLES,
        "keep_results": cfg["keep_results"],
        "result_ttl_s": cfg["result_ttl"],
        "result_bytes": cfg["result_bytes"],
    }
    return jsonify(
        {
            "version": __version__,
            "api": 1,
            "engine": queue.engine_state,
            "engine_error": queue.engine_error,
            "device": described.get("device", cfg["device"]),
            "weights": described.get("weights", cfg["weights"]),
            "engine_info": described,
            "auth_required": bool(cfg["token"]),
            "limits": limits,
            "defaults": StyleParams().to_dict(),
            "preview_every": cfg["preview_every"],
            "cache": queue.cache_stats() if engine is not None else None,
            "workers": queue.workers_info(owner),
            "jobs": queue.counts(),
            "own_jobs": queue.jobs_of(owner),
        }
    )
