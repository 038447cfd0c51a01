"""One error shape for every failure: `{"error": {"code": ..., "message": ...}}` with a fitting HTTP status.

Plug-ins show `message` to the painter and branch on `code`, so even Flask's own 404/405/413 go through here
and no HTML page or traceback ever reaches a client.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ..limits import MAX_FIELD_BYTES, MAX_FORM_TEXT_BYTES, MAX_PARAMS_BYTES

log = logging.getLogger("stylelayer.api")

# Werkzeug's own exceptions, renamed to the codes documented in docs/api.md.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "queue_full",
    500: "internal",
    503: "unavailable",
}
MAX_MESSAGE = 400  # characters of an error message; a longer one (an echoed value) is cut to an excerpt


class ApiError(Exception):
    """A request failed in a way the client should hear about; raised anywhere inside a view."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, dict[str, str]]:
    """The one error shape, also used for the errors waitress itself answers (http_server.py)."""
    if len(message) > MAX_MESSAGE:
        message = f"{message[: MAX_MESSAGE - 60]}… ({len(message) - MAX_MESSAGE + 60} more characters not shown)"
    body = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return {"error": body}


def too_large_message(limit: int) -> str:
    return f"the request is larger than this server's upload limit of {limit} bytes"


def field_too_large(name: str, size: int) -> ApiError:
    """A text field of a form over its own limit (413, naming the field and the limit)."""
    limit = MAX_PARAMS_BYTES if name == "params" else MAX_FIELD_BYTES
    return ApiError(413, "too_large", f"{name}: at most {limit} bytes; this one has {size}", field=name)


def check_form_fields() -> None:
    """Every text field of the request's form within its own limit (files are limited by the upload limit)."""
    for name, values in request.form.lists():
        for value in values:
            size = len(value.encode("utf-8", "replace"))
            if size > (MAX_PARAMS_BYTES if name == "params" else MAX_FIELD_BYTES):
                raise field_too_large(name, size)


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    response = jsonify(error_body(code, message, field))
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="stylelayer"'
    response.headers.update(headers or {})
    return response


def register_error_handlers(app: Flask) -> None:
    """Route every exception, ours or Werkzeug's or unexpected, to the JSON error shape."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        message = exc.description or exc.name
        if (
            status == 413
            and request.content_length is not None
            and (request.content_length <= current_app.config["MAX_CONTENT_LENGTH"])
        ):  # Werkzeug's form parser: a text field it stopped reading, or too many parts
            message = (
                f"a text field of the form is over {MAX_FORM_TEXT_BYTES} bytes, or the form has over"
                f" {current_app.config['MAX_FORM_PARTS']} parts: params may have at most {MAX_PARAMS_BYTES} bytes,"
                f" other text fields {MAX_FIELD_BYTES}; images go in file fields"
            )
        elif status == 413:
            message = too_large_message(current_app.config["MAX_CONTENT_LENGTH"])
        response = error_response(status, code, message)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")  # the traceback stays in the server log, never in the response
        return error_response(500, "internal", "internal server error; see the server log")
