"""`ServerThread`: a real server (waitress, as `stylelayer serve` runs it) on 127.0.0.1 and a free port, in a
background thread, for the protocol, reliability, GPU and end-to-end plug-in tests."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from flask import Flask
from waitress import wasyncore

from stylelayer.api.http_server import HTTP_THREADS, create_http_server
from stylelayer.api.serve import close_server


class ServerThread:
    """Run `app` under waitress on 127.0.0.1, a free port, in a daemon thread (a context manager)."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", threads: int = HTTP_THREADS):
        self.app = app
        self._server: Any = create_http_server(app, host, 0, threads)  # as `stylelayer serve` builds it
        self.url = f"http://{host}:{self._server.effective_port}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stylelayer-http", daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """End the job worker, then stop accepting, close connections, and wait for both threads.

        Jobs go first: a /v1/stylize request waits on its job, and waitress's task threads would otherwise hold
        the shutdown for their 5 s timeout before the job was cancelled, and that client got a reset instead of
        a JSON answer.
        """
        state = self.app.extensions.get("stylelayer")
        if state is not None:
            state.queue.stop(timeout)
        self._stopping.set()
        # Wake the select() at once instead of after its timeout. OSError (EBADF): the loop woke by itself after
        # the flag was set and has already closed the trigger on its way out.
        with contextlib.suppress(OSError):
            self._server.pull_trigger()
        self._thread.join(timeout)

    def _serve(self) -> None:
        # waitress has no public stop for an embedded server, so the loop runs here one poll at a time and the
        # sockets are closed by this same thread (closing them from another thread races the select()).
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=0.5, map=self._server._map, count=1)
        finally:
            close_server(self._server)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
