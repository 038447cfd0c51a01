"""One error shape for every failure: `{"error": {"code": ..., "message": ...}}` with a fitting HTTP status.

Plug-ins show `message` to the painter and branch on `code`, so even Flask's own 404/405/413 go through here
and no HTML page or traceback ever reaches a client.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException

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
    body = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return {"error": body}


def too_large_message(limit: int) -> str:
    return f"the request is larger than this server's upload limit of {limit} bytes"


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
        if status == 413:
            message = too_large_message(current_app.config["MAX_CONTENT_LENGTH"])
        response = error_response(status, code, message)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")  # the traceback stays in the server log, never in the response
        return error_response(500, "internal", "internal server error; see the server log")
