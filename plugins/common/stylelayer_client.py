"""Client for the stylelayer server's HTTP API v1, for the Krita and GIMP plug-ins and for scripts.

Standard library only and Python 3.8 syntax, because Krita and GIMP embed their own Python without pip. This
file is the one source; `stylelayer install-plugin` copies it into each plug-in's folder.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "ConnectionLost",
    "JobCancelled",
    "JobFailed",
    "ServerUnavailable",
    "StylelayerClient",
    "StylelayerError",
    "TimedOut",
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
    """Nothing listens at the address (connection refused) or the host name is unknown: start the server or fix
    the address. Only these; a server that is slow or breaks a connection raises TimedOut or ConnectionLost."""


class TimedOut(StylelayerError):
    """No answer within the timeout the caller asked for (the server may be busy; nothing says it is down)."""


class ConnectionLost(StylelayerError):
    """The connection broke in the middle of a request (reset, closed early): the server may have stopped."""


class JobFailed(StylelayerError):
    """The job ended in the 'failed' state; the message says why (e.g. GPU out of memory)."""


class JobCancelled(StylelayerError):
    """The job was cancelled, by this client or another."""


_PER_REQUEST = object()  # "use self.timeout" (None means no limit, so it cannot be the marker)


class StylelayerClient:
    """Thin wrapper over the routes; every method raises StylelayerError (or a subclass) on failure.

    `timeout` is the limit for one ordinary request (a poll, an upload). Waiting for a job to finish is limited
    separately, by the `timeout` argument of `stylize` and `run_job`: None (their default) waits until it is done.
    """

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

    def losses(self, job_id: str, since: int = 0) -> dict:
        """Loss points after iteration `since`: {"id", "state", "since", "next", "points": [{"iteration",
        "content", "style", "tv", "total"}, ...]}; pass `next` as `since` to the following call."""
        return self._json("GET", "/v1/jobs/" + _quote(job_id) + "/losses?since=" + str(int(since)))

    def loss_plot(self, job_id: str) -> bytes:
        """The loss curves as a PNG (log scale, one line per term)."""
        return self._request("GET", "/v1/jobs/" + _quote(job_id) + "/losses.png")

    def stylize(
        self,
        content_png: bytes | None,
        style_png: bytes | Sequence[bytes] | None = None,
        style_id: str | Sequence[str] | None = None,
        params: dict | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """Run a job synchronously (one long request) and return the PNG; prefer run_job in a user interface.

        Waits until the job is done, or at most `timeout` seconds (TimedOut); hanging up cancels the job on the
        server, so giving up here never leaves it running.
        """
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
        timeout: float | None = None,
    ) -> bytes:
        """Submit, poll until the job ends and return the result PNG.

        on_progress(status, preview) is called after each poll; preview is PNG bytes when a new preview exists,
        else None. When should_cancel() returns True the job is cancelled on the server and JobCancelled raised.
        `timeout`: seconds to wait for the job, queued and running together (None: until it ends); past it the
        job is cancelled on the server and TimedOut raised.
        """
        job_id = self.submit(content_png, style_png, style_id, params, preview_every)
        deadline = None if timeout is None else time.monotonic() + timeout
        seen_preview = None
        while True:
            if should_cancel is not None and should_cancel():
                self.cancel(job_id)
                raise JobCancelled("the job was cancelled", code="job_cancelled")
            if deadline is not None and time.monotonic() > deadline:
                self.cancel(job_id)
                raise TimedOut(f"the job did not finish within {timeout:g} s and was cancelled", code="timeout")
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
        timeout: Any = _PER_REQUEST,
    ) -> bytes:
        """One request; `timeout` seconds of silence from the server at most (None: no limit)."""
        if timeout is _PER_REQUEST:
            timeout = self.timeout
        request = urllib.request.Request(self.base_url + path, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise _http_error(exc) from None
        except OSError as exc:  # URLError wraps the socket's error in .reason
            raise self._transport_error(exc, timeout) from None

    def _transport_error(self, exc: OSError, timeout: float | None) -> StylelayerError:
        """Refused or unknown host -> ServerUnavailable; silence -> TimedOut; anything else -> ConnectionLost."""
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (ConnectionRefusedError, socket.gaierror)):
            return ServerUnavailable(
                f"cannot reach the stylelayer server at {self.base_url} ({reason}). Start it with 'stylelayer serve' "
                "and check the address in the plug-in settings.",
                code="server_unavailable",
            )
        if isinstance(reason, (socket.timeout, TimeoutError)):
            within = "" if timeout is None else f" within {timeout:g} s"
            return TimedOut(
                f"the stylelayer server at {self.base_url} did not answer{within}; it may be busy or stuck (see its "
                "window or log)",
                code="timeout",
            )
        return ConnectionLost(
            f"the connection to the stylelayer server at {self.base_url} broke ({reason}); it may have stopped",
            code="connection_lost",
        )


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
