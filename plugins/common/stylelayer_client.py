"""Client for the stylelayer server's HTTP API v1, for the Krita and GIMP plug-ins and for scripts.

Standard library only and Python 3.8 syntax, because Krita and GIMP embed their own Python without pip. This
file is the one source; `stylelayer install-plugin` copies it into each plug-in's folder.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "JobCancelled",
    "JobFailed",
    "ServerUnavailable",
    "StylelayerClient",
    "StylelayerError",
]

DEFAULT_URL = "http://127.0.0.1:8765"  # = stylelayer.limits.DEFAULT_URL (a test checks)


class StylelayerError(Exception):
    """The server refused or failed a request; `code` is the API's error code, `status` the HTTP status."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class ServerUnavailable(StylelayerError):
    """No server answered (not started, wrong address, or it stopped responding)."""


class JobFailed(StylelayerError):
    """The job ended in the 'failed' state; the message says why (e.g. GPU out of memory)."""


class JobCancelled(StylelayerError):
    """The job was cancelled, by this client or another."""


class StylelayerClient:
    """Thin wrapper over the routes; every method raises StylelayerError (or a subclass) on failure."""

    def __init__(self, base_url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    # ---- server ----------------------------------------------------------------------------------------------
    def health(self) -> dict:
        return self._json("GET", "/v1/health")

    def info(self) -> dict:
        return self._json("GET", "/v1/info")

    # ---- jobs ------------------------------------------------------------------------------------------------
    def submit(
        self,
        content_png: bytes | None,
        style_png: bytes | Sequence[bytes] | None = None,
        style_id: str | Sequence[str] | None = None,
        params: dict | None = None,
        preview_every: int | None = None,
    ) -> str:
        """Queue a job and return its id. Styles: image bytes and/or library ids, one or a list of each."""
        body, content_type = _job_form(content_png, style_png, style_id, params, preview_every)
        return self._json("POST", "/v1/jobs", body, content_type)["id"]

    def status(self, job_id: str) -> dict:
        return self._json("GET", "/v1/jobs/" + _quote(job_id))

    def preview(self, job_id: str) -> bytes | None:
        """The latest preview PNG, or None while there is none yet."""
        try:
            return self._request("GET", "/v1/jobs/" + _quote(job_id) + "/preview")
        except StylelayerError as exc:
            if exc.code == "no_preview":
                return None
            raise

    def result(self, job_id: str) -> bytes:
        """The finished PNG (parameters and seed are in its text chunks)."""
        return self._request("GET", "/v1/jobs/" + _quote(job_id) + "/result")

    def cancel(self, job_id: str) -> dict:
        return self._json("POST", "/v1/jobs/" + _quote(job_id) + "/cancel")

    def stylize(
        self,
        content_png: bytes | None,
        style_png: bytes | Sequence[bytes] | None = None,
        style_id: str | Sequence[str] | None = None,
        params: dict | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """Run a job synchronously (one long request) and return the PNG; prefer run_job in a user interface."""
        body, content_type = _job_form(content_png, style_png, style_id, params, None)
        return self._request("POST", "/v1/stylize", body, content_type, timeout=timeout)

    def run_job(
        self,
        content_png: bytes | None,
        style_png: bytes | Sequence[bytes] | None = None,
        style_id: str | Sequence[str] | None = None,
        params: dict | None = None,
        on_progress: Callable[[dict, bytes | None], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        poll_interval: float = 0.5,
        preview_every: int | None = None,
    ) -> bytes:
        """Submit, poll until the job ends and return the result PNG.

        on_progress(status, preview) is called after each poll; preview is PNG bytes when a new preview exists,
        else None. When should_cancel() returns True the job is cancelled on the server and JobCancelled raised.
        """
        job_id = self.submit(content_png, style_png, style_id, params, preview_every)
        seen_preview = None
        while True:
            if should_cancel is not None and should_cancel():
                self.cancel(job_id)
                raise JobCancelled("the job was cancelled", code="job_cancelled")
            status = self.status(job_id)
            preview = None
            if status.get("preview_iteration") not in (None, seen_preview) and status["state"] == "running":
                preview = self.preview(job_id)
                seen_preview = status["preview_iteration"]
            if on_progress is not None:
                on_progress(status, preview)
            state = status["state"]
            if state == "done":
                return self.result(job_id)
            if state == "failed":
                error = status.get("error") or {}
                raise JobFailed(error.get("message", "the job failed"), code=error.get("code"))
            if state == "cancelled":
                raise JobCancelled("the job was cancelled", code="job_cancelled")
            time.sleep(poll_interval)

    # ---- style library ---------------------------------------------------------------------------------------
    def styles(self) -> list:
        return self._json("GET", "/v1/styles")["styles"]

    def style_thumbnail(self, style_id: str) -> bytes:
        return self._request("GET", "/v1/styles/" + _quote(style_id) + "/thumbnail")

    def add_style(self, name: str, image_bytes: bytes) -> dict:
        body, content_type = _multipart([("name", None, name.encode("utf-8")), ("image", "style.png", image_bytes)])
        return self._json("POST", "/v1/styles", body, content_type)

    def delete_style(self, style_id: str) -> None:
        self._json("DELETE", "/v1/styles/" + _quote(style_id))

    # ---- transport -------------------------------------------------------------------------------------------
    def _json(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> Any:
        data = self._request(method, path, body, content_type)
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError:
            raise StylelayerError("the server sent a reply that is not JSON", code="bad_reply") from None

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> bytes:
        request = urllib.request.Request(self.base_url + path, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise _http_error(exc) from None
        except OSError as exc:  # URLError, refused connections and timeouts all derive from OSError
            reason = getattr(exc, "reason", exc)
            raise ServerUnavailable(
                f"cannot reach the stylelayer server at {self.base_url} ({reason}). Start it with 'stylelayer serve' "
                "and check the address in the plug-in settings.",
                code="server_unavailable",
            ) from None


def _http_error(exc: urllib.error.HTTPError) -> StylelayerError:
    try:
        error = json.loads(exc.read().decode("utf-8"))["error"]
        return StylelayerError(str(error["message"]), code=str(error["code"]), status=exc.code)
    except (ValueError, KeyError, TypeError, OSError):
        return StylelayerError(f"HTTP {exc.code} {exc.reason}", status=exc.code)
    finally:
        exc.close()


def _quote(part: str) -> str:
    return urllib.parse.quote(str(part), safe="")


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray, str)):
        return [value]
    return list(value)


def _job_form(
    content_png: bytes | None,
    style_png: bytes | Sequence[bytes] | None,
    style_id: str | Sequence[str] | None,
    params: dict | None,
    preview_every: int | None,
) -> tuple:
    fields = [("params", None, json.dumps(params or {}).encode("utf-8"))]
    if preview_every is not None:
        fields.append(("preview_every", None, str(int(preview_every)).encode("ascii")))
    if content_png is not None:
        fields.append(("content", "content.png", bytes(content_png)))
    for i, image in enumerate(_as_list(style_png)):
        fields.append(("style", f"style{i}.png", bytes(image)))
    for sid in _as_list(style_id):
        fields.append(("style_id", None, str(sid).encode("utf-8")))
    return _multipart(fields)


def _multipart(fields: list) -> tuple:
    """Encode (name, filename or None, bytes) triples as multipart/form-data; returns (body, content type)."""
    boundary = "stylelayer-" + uuid.uuid4().hex
    parts = []
    for name, filename, data in fields:
        head = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            head += f'; filename="{filename}"\r\nContent-Type: application/octet-stream'
        parts.append(b"--" + boundary.encode("ascii") + b"\r\n" + head.encode("utf-8") + b"\r\n\r\n" + data + b"\r\n")
    body = b"".join(parts) + b"--" + boundary.encode("ascii") + b"--\r\n"
    return body, "multipart/form-data; boundary=" + boundary
