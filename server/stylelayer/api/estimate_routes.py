"""/v1/estimate: how long a job would take on this server, and whether it fits its memory, before it is sent.

The plug-ins call it while the painter changes size, iterations or preset, with the size of the layer they
would send (no image upload), so the dialog can say "about 3 min" before OK is pressed, and how long the jobs
queued or running before it would make it wait.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..core.params import ParamError, StyleParams
from .errors import ApiError
from .estimate import estimate_json, queue_wait
from .state import server_state

estimate = Blueprint("estimate", __name__, url_prefix="/v1")


@estimate.post("/estimate")
def post_estimate() -> Response:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "bad_request",
            'send a JSON object: {"width": W, "height": H, "params": {...}} (Content-Type: application/json)',
        )
    unknown = sorted(set(body) - {"width", "height", "params"})
    if unknown:
        raise ApiError(400, "bad_param", f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
    try:
        params = StyleParams.from_json(body.get("params", {}))
    except ParamError as exc:
        raise ApiError(400, "bad_param", str(exc), field=exc.field) from None
    state = server_state()
    size = _content_size(body, params, state.config["max_pixels"])
    queue = state.queue
    if queue.engine_error is not None:
        raise ApiError(503, "engine_unavailable", queue.engine_error)
    engine = queue.engine
    if queue.engine_state != "ready" or engine is None:
        raise ApiError(503, "engine_loading", "the style engine is still loading; ask again in a few seconds")
    wait = queue_wait(engine, queue.jobs_snapshot(), queue.speed, workers=max(1, len(queue.workers_info())))
    return jsonify(estimate_json(engine, queue.speed, size, params, wait))


def _content_size(body: dict, params: StyleParams, max_pixels: int) -> tuple[int, int] | None:
    """(width, height) of the content the job would send; None for texture mode's output_size."""
    if "width" not in body and "height" not in body:
        if params.mode == "texture" and params.output_size:
            return None
        raise ApiError(400, "missing_field", "width and height of the content image are required", field="width")
    size = []
    for name in ("width", "height"):
        value = body.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ApiError(400, "bad_param", f"{name}: must be a whole number of pixels, at least 1", field=name)
        size.append(value)
    width, height = size
    if width * height > max_pixels:
        raise ApiError(
            400,
            "bad_param",
            f"{width}x{height} is {width * height} pixels; this server's limit is {max_pixels}",
            field="width",
        )
    return width, height
