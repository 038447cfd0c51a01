"""The check every request passes before its route runs: token, loopback Host, and no writes from web pages.

A web page the painter visits could otherwise POST to 127.0.0.1 (browsers send such "simple" requests without
preflight), or reach the server through a DNS name rebound to 127.0.0.1.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from flask import request

from .errors import ApiError, too_large_message
from .state import server_state

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def check_request() -> None:
    """Body size by Content-Length first, then the token on every route when configured; state-changing requests
    from another web origin refused.

    A foreign or `null` Origin, or a cross-site fetch, is rejected outright on every write.
    """
    config = server_state().config
    if request.content_length is not None and request.content_length > config["max_content_length"]:
        # Refused by its Content-Length, before anything reads the body (waitress refuses it even earlier).
        raise ApiError(413, "too_large", too_large_message(config["max_content_length"]))
    token = config["token"]
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
