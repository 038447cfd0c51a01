"""The latest preview of each job, in memory only: a preview is worth nothing once the job is done (the result
replaces it) and is not kept across a restart. Kept apart from the `Job` record so that the record stays plain
data that the store writes and `job_json` shows whole."""

from __future__ import annotations

import threading

from .workers import Preview


class Previews:
    """job id -> its latest preview; thread-safe (worker threads offer, request threads read)."""

    def __init__(self) -> None:
        self._latest: dict[str, Preview] = {}
        self._lock = threading.Lock()

    def offer(self, job_id: str, preview: Preview) -> None:
        with self._lock:
            self._latest[job_id] = preview

    def png(self, job_id: str) -> bytes | None:
        """The latest preview as PNG (encoded at the first request), None while there is none."""
        with self._lock:
            preview = self._latest.get(job_id)
        return preview.png() if preview is not None else None

    def drop(self, job_id: str) -> None:
        with self._lock:
            self._latest.pop(job_id, None)
