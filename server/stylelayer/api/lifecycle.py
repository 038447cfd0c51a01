"""How a plug-in finds, and ends, a server it started: the ready file, a stop request and `--idle-exit`.

A managed server (started by the Krita or GIMP plug-in, see plugins/common/stylelayer_managed.py) outlives the
plug-in process that started it (GIMP runs a plug-in per filter call), so the next plug-in run must find it again
and something must end it. Both go through the server's data folder, which the job store's lock already ties to
one server:

- `ready.json` is written once the server listens (url, port, pid, device, version) and removed when it stops;
- a `stop-request` file asks the server to stop cleanly: a plain file works the same on Windows, where there is no
  SIGTERM to send to a detached process;
- `--idle-exit MINUTES` stops the server when no job is queued or running and no request came for that long.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

READY_FILE = "ready.json"
STOP_FILE = "stop-request"
POLL_S = 1.0  # how often the watcher looks at the stop request and the idle time


def write_ready(data_dir: Path, info: dict[str, Any]) -> Path:
    """Write `info` (with this process's pid) to <data_dir>/ready.json atomically: a reader sees all or nothing."""
    path = Path(data_dir) / READY_FILE
    tmp = path.with_name(f".{READY_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps({**info, "pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, path)
    return path


def remove_ready(data_dir: Path) -> None:
    """Remove the ready file if it is this process's (a later server may already have written its own)."""
    path = Path(data_dir) / READY_FILE
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()


class Watcher:
    """A daemon thread that ends the server (KeyboardInterrupt in the main thread, as Ctrl+C does) when a stop
    request appears in the data folder, or after `idle_s` seconds without requests while `busy()` is false."""

    def __init__(self, data_dir: Path, busy: Callable[[], bool], idle_s: float | None, poll_s: float = POLL_S):
        self.stop_file = Path(data_dir) / STOP_FILE
        self.busy = busy
        self.idle_s = idle_s
        self.poll_s = poll_s
        self.last_request = time.monotonic()
        self.reason: str | None = None
        with contextlib.suppress(FileNotFoundError):
            self.stop_file.unlink()  # a request left over from an earlier server is not for this one
        self._thread = threading.Thread(target=self._watch, name="stylelayer-lifecycle", daemon=True)

    def touch(self) -> None:
        """A request came in (registered as a Flask before_request hook)."""
        self.last_request = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        while self.reason is None:
            time.sleep(self.poll_s)
            if self.stop_file.exists():
                with contextlib.suppress(OSError):
                    self.stop_file.unlink()
                self.reason = "a stop was requested"
            elif self.busy():
                self.last_request = time.monotonic()  # idle time counts from the end of the last job
            elif self.idle_s is not None and time.monotonic() - self.last_request >= self.idle_s:
                self.reason = f"idle for {self.idle_s / 60:g} min (--idle-exit)"
        _thread.interrupt_main()
