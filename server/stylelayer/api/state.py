"""What every request handler of one app shares: its settings, its job queue and its style library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app

from .job_queue import JobQueue
from .style_library import StyleLibrary


@dataclass
class ServerState:
    config: dict[str, Any]
    queue: JobQueue
    library: StyleLibrary


def server_state() -> ServerState:
    """The state of the app handling the current request (set up by `create_app`)."""
    return current_app.extensions["stylelayer"]
