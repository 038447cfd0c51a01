"""waitress set up for this API, the one place both `stylelayer serve` and the tests build their server.

- Errors that waitress answers itself, before the app sees a request (a malformed request, headers over
  waitress's limit, a body over the upload limit), are JSON in the API's error shape, not waitress's text/plain.
- The upload limit is waitress's own body limit too, so a request whose Content-Length is over it is refused
  before its body is read (rather than buffered to disk in full and then refused by the app).
- `channel_request_lookahead` lets waitress keep reading a connection while its request runs, which is how it
  notices a client that hung up: `/v1/stylize` sees that through `environ["waitress.client_disconnected"]`.
"""

from __future__ import annotations

import json
from typing import Any, cast

from flask import Flask
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import MultiSocketServer, create_server
from waitress.task import ErrorTask

from .errors import error_body, too_large_message

HTTP_THREADS = 8  # polling clients and waiting /v1/stylize calls each hold one while they run

# waitress's own error classes (waitress.utilities), by status, as the API's error codes.
_WAITRESS_CODES = {
    400: "bad_request",
    413: "too_large",
    431: "headers_too_large",
    500: "internal",
    501: "not_implemented",
}


class JsonErrorTask(ErrorTask):
    """waitress's error response with a JSON body in the API's shape (the status stays waitress's)."""

    def execute(self) -> None:
        # (typeshed's stub calls `request` the Error itself; it is the parser that holds it)
        error = cast(HTTPRequestParser, self.request).error
        assert error is not None  # waitress makes an ErrorTask only for a request with an error
        if error.code == 413:
            message = too_large_message(self.channel.adj.max_request_body_size - 1)  # = the app's limit, below
        else:
            message = f"{error.reason}: {error.body}"
        body = json.dumps(error_body(_WAITRESS_CODES.get(error.code, "bad_request"), message)).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers = [*self.response_headers, ("Content-Type", "application/json")]
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def create_http_server(app: Flask, host: str, port: int, threads: int = HTTP_THREADS) -> Any:
    """A waitress server for `app` on host:port (0: any free port), not yet running.

    Raises OSError when it cannot listen there: the port is taken, or the host name has several addresses (waitress
    would listen on each with its own server, and our JSON error channel and printed URL assume one).
    (Any: the server's effective_host/effective_port are missing from typeshed's waitress stubs.)"""
    server = create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        channel_request_lookahead=1,
        max_request_body_size=app.config["MAX_CONTENT_LENGTH"] + 1,  # waitress refuses at >= this
        ident="stylelayer",
    )
    if isinstance(server, MultiSocketServer):
        addresses = ", ".join(f"{h}:{p}" for h, p in server.effective_listen)
        server.close()
        raise OSError(f"{host} has several addresses ({addresses}): give one of them, such as 127.0.0.1")
    server.channel_class = JsonErrorChannel  # read by waitress for every accepted connection
    return server
