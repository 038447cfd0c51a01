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
    "JobInterrupted",
    "NotStylelayer",
    "ServerUnavailable",
    "StylelayerClient",
    "StylelayerError",
    "TimedOut",
    "VersionMismatch",
    "WrongToken",
]

DEFAULT_URL = "http://127.0.0.1:8765"  # = stylelayer.limits.DEFAULT_URL (a test checks)
API_VERSION = 1  # the /v1/ routes; /v1/info says which API a server speaks
MIN_SERVER_VERSION = "0.1.0"  # the oldest server with every route this client calls (estimate, abandon_after)


class StylelayerError(Exception):
    """The server refused or failed a request; `code` is the API's error code, `status` the HTTP status."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None, url: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.url = url  # the server's address, when the client knows it


class ServerUnavailable(StylelayerError):
    """Nothing listens at the address (connection refused) or the host name is unknown: start the server or fix
    the address. Only these; a server that is slow or breaks a connection raises TimedOut or ConnectionLost."""


class TimedOut(StylelayerError):
    """No answer within the timeout the caller asked for (the server may be busy; nothing says it is down)."""


class ConnectionLost(StylelayerError):
    """The connection broke in the middle of a request (reset, closed early): the server may have stopped."""


class NotStylelayer(StylelayerError):
    """Something answers at the address, but not a stylelayer server: another web server, a proxy's error page,
    a wrong port, or a path after host:port."""


class WrongToken(StylelayerError):
    """The server requires a token and the one sent is missing or wrong (HTTP 401)."""


class VersionMismatch(StylelayerError):
    """The server speaks another API version than this client, or is older than the routes it calls."""


class JobFailed(StylelayerError):
    """The job ended in the 'failed' state; the message says why (e.g. GPU out of memory)."""


class JobInterrupted(StylelayerError):
    """The server accepted the job, then stopped answering (it crashed, was killed or restarted) before the result
    came back: unlike ServerUnavailable, the server was there and the run was cut off; the address is right."""


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

    def probe(self) -> dict:
        """/v1/info of a server this client can work with, checked: raises ServerUnavailable, TimedOut or
        ConnectionLost (nothing usable answers), NotStylelayer, WrongToken or VersionMismatch."""
        try:
            info = self.info()
        except StylelayerError as exc:
            if type(exc) is StylelayerError and exc.status == 404:  # a JSON 404: a path after host:port
                raise NotStylelayer(
                    f"{self.base_url} has no /v1/info (HTTP 404): the server URL must be the server's address only, "
                    f"like {DEFAULT_URL}",
                    code="not_stylelayer",
                    status=404,
                    url=self.base_url,
                ) from None
            raise
        if not isinstance(info, dict) or not isinstance(info.get("version"), str) or "api" not in info:
            raise NotStylelayer(
                f"{self.base_url} answers JSON, but not like a stylelayer server",
                code="not_stylelayer",
                url=self.base_url,
            )
        if info["api"] != API_VERSION or _version(info["version"]) < _version(MIN_SERVER_VERSION):
            raise VersionMismatch(
                f"the server runs stylelayer {info['version']} (API {info['api']}); this client needs API "
                f"{API_VERSION} from version {MIN_SERVER_VERSION} on",
                code="version_mismatch",
                url=self.base_url,
            )
        return info

    def estimate(self, width: int | None, height: int | None, params: dict | None = None) -> dict:
        """How long a job on a `width`x`height` content would take, and whether it fits the server's memory:
        {"fits", "problem", "seconds", "iterations", "levels", "device", "speed": {"source", ...}, ...}."""
        body: dict = {"params": params or {}}
        if width is not None and height is not None:
            body.update(width=int(width), height=int(height))
        return self._json("POST", "/v1/estimate", json.dumps(body).encode("utf-8"), "application/json")

    # ---- jobs ------------------------------------------------------------------------------------------------
    def submit(
        self,
        content_png: bytes | None,
        style_png: bytes | Sequence[bytes] | None = None,
        style_id: str | Sequence[str] | None = None,
        params: dict | None = None,
        preview_every: int | None = None,
        abandon_after: float | None = None,
        regions: Sequence[tuple] = (),
    ) -> str:
        """Queue a job and return its id. Styles: image bytes and/or library ids, one or a list of each.

        `abandon_after`: seconds without a status request after which the server cancels the job, so a client
        that is killed (e.g. by GIMP's progress-bar cancel) does not leave it running; None: never.
        `regions`: (mask PNG, style image bytes, style id) each, the styles one, a list or None as above; each
        region's style paints where its mask is white (stylelayer_regions.region_form builds them).
        """
        body, content_type = _job_form(content_png, style_png, style_id, params, preview_every, abandon_after, regions)
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
        body, content_type = _job_form(content_png, style_png, style_id, params, None, None)
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
        abandon_after: float | None = None,
        regions: Sequence[tuple] = (),
    ) -> bytes:
        """Submit, poll until the job ends and return the result PNG.

        on_progress(status, preview) is called after each poll; preview is PNG bytes when a new preview exists,
        else None. When should_cancel() returns True the job is cancelled on the server and JobCancelled raised.
        `timeout`: seconds to wait for the job, queued and running together (None: until it ends); past it the
        job is cancelled on the server and TimedOut raised. `abandon_after`: see `submit` (well above
        `poll_interval`). A server that stops answering once it has accepted the job raises JobInterrupted.
        `regions`: see `submit`.
        """
        job_id = self.submit(content_png, style_png, style_id, params, preview_every, abandon_after, regions)
        try:
            return self._follow(job_id, on_progress, should_cancel, poll_interval, timeout)
        except (ServerUnavailable, ConnectionLost) as exc:
            raise JobInterrupted(
                f"the stylelayer server at {self.base_url} stopped answering during job {job_id} ({exc.message})",
                code="job_interrupted",
                url=self.base_url,
            ) from None

    def _follow(
        self,
        job_id: str,
        on_progress: Callable[[dict, bytes | None], None] | None,
        should_cancel: Callable[[], bool] | None,
        poll_interval: float,
        timeout: float | None,
    ) -> bytes:
        """Poll an accepted job until it ends (run_job's loop)."""
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
            raise NotStylelayer(
                f"{self.base_url} sent a reply that is not JSON: it is not a stylelayer server",
                code="not_stylelayer",
                url=self.base_url,
            ) from None

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
            raise _http_error(exc, self.base_url, bool(self.token)) from None
        except OSError as exc:  # URLError wraps the socket's error in .reason
            raise self._transport_error(exc, timeout) from None

    def _transport_error(self, exc: OSError, timeout: float | None) -> StylelayerError:
        """Refused or unknown host -> ServerUnavailable; silence -> TimedOut; anything else -> ConnectionLost."""
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (ConnectionRefusedError, socket.gaierror)):
            return ServerUnavailable(
                f"cannot reach the stylelayer server at {self.base_url} ({_reason(reason)}); start it with "
                "'stylelayer serve' or check the address",
                code="server_unavailable",
                url=self.base_url,
            )
        if isinstance(reason, (socket.timeout, TimeoutError)):
            within = "" if timeout is None else f" within {timeout:g} s"
            return TimedOut(
                f"the stylelayer server at {self.base_url} did not answer{within}; it may be busy or stuck (see its "
                "window or log)",
                code="timeout",
                url=self.base_url,
            )
        return ConnectionLost(
            f"the connection to the stylelayer server at {self.base_url} broke ({_reason(reason)}); it may have "
            "stopped, or the address is not a stylelayer server",
            code="connection_lost",
            url=self.base_url,
        )


def _http_error(exc: urllib.error.HTTPError, url: str, sent_token: bool) -> StylelayerError:
    """The API's JSON error as a StylelayerError (WrongToken for 401); any other answer is NotStylelayer."""
    try:
        error = json.loads(exc.read().decode("utf-8"))["error"]
        message, code = str(error["message"]), str(error["code"])
    except (ValueError, KeyError, TypeError, OSError):
        return NotStylelayer(
            f"{url} answered HTTP {exc.code} {exc.reason}, not like a stylelayer server",
            code="not_stylelayer",
            status=exc.code,
            url=url,
        )
    finally:
        exc.close()
    if exc.code == 401:
        problem = "refused the token it was sent" if sent_token else "requires a token and none was sent"
        return WrongToken(f"the server at {url} {problem}", code=code, status=401, url=url)
    return StylelayerError(message, code=code, status=exc.code, url=url)


def _reason(reason: object) -> str:
    """The socket error's own words: 'Connection refused', not '<urlopen error [Errno 111] Connection refused>'."""
    return str(getattr(reason, "strerror", None) or reason)


def _version(text: str) -> tuple:
    """'0.10.2' -> (0, 10, 2); anything after the numbers is ignored ('0.2.0.dev1' -> (0, 2, 0))."""
    parts = []
    for piece in text.split("."):
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


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
    abandon_after: float | None = None,
    regions: Sequence[tuple] = (),
) -> tuple:
    fields: list[tuple[str, str | None, bytes]] = [("params", None, json.dumps(params or {}).encode("utf-8"))]
    if preview_every is not None:
        fields.append(("preview_every", None, str(int(preview_every)).encode("ascii")))
    if abandon_after is not None:
        fields.append(("abandon_after", None, str(int(abandon_after)).encode("ascii")))
    if content_png is not None:
        fields.append(("content", "content.png", bytes(content_png)))
    for i, image in enumerate(_as_list(style_png)):
        fields.append(("style", f"style{i}.png", bytes(image)))
    for sid in _as_list(style_id):
        fields.append(("style_id", None, str(sid).encode("utf-8")))
    for number, (mask_png, region_png, region_id) in enumerate(regions, 1):  # region1_..., numbered without gaps
        prefix = f"region{number}_"
        fields.append((prefix + "mask", prefix + "mask.png", bytes(mask_png)))
        for i, image in enumerate(_as_list(region_png)):
            fields.append((prefix + "style", f"{prefix}style{i}.png", bytes(image)))
        for sid in _as_list(region_id):
            fields.append((prefix + "style_id", None, str(sid).encode("utf-8")))
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
