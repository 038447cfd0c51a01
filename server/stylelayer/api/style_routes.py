"""/v1/styles: the server's library of style images (list, add, thumbnail, delete)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from .errors import ApiError, check_form_fields
from .images import load_upload
from .state import server_state
from .style_library import StyleNotFound

styles = Blueprint("styles", __name__, url_prefix="/v1")


@styles.get("/styles")
def list_styles() -> Response:
    return jsonify({"styles": server_state().library.entries()})


@styles.post("/styles")
def add_style() -> tuple[Response, int, dict[str, str]]:
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data with an 'image' file and a 'name'")
    check_form_fields()
    upload = request.files.get("image")
    if upload is None:
        raise ApiError(400, "missing_field", "an 'image' file is required", field="image")
    image = load_upload(upload.read(), "image", server_state().config["max_pixels"])
    name = request.form.get("name") or upload.filename or ""
    try:
        meta = server_state().library.add(name, image)
    except ValueError as exc:
        raise ApiError(400, "bad_param", str(exc), field="name") from None
    return jsonify(meta), 201, {"Location": f"/v1/styles/{meta['id']}/thumbnail"}


@styles.get("/styles/<style_id>/thumbnail")
def style_thumbnail(style_id: str) -> Response:
    try:
        data = server_state().library.thumbnail(style_id)
    except StyleNotFound:
        raise _not_found(style_id) from None
    return Response(data, mimetype="image/png")


@styles.delete("/styles/<style_id>")
def delete_style(style_id: str) -> Response:
    try:
        server_state().library.delete(style_id)
    except StyleNotFound:
        raise _not_found(style_id) from None
    return jsonify({"id": style_id, "deleted": True})


def _not_found(style_id: str) -> ApiError:
    return ApiError(404, "style_not_found", f"no style {style_id!r} in the library")
