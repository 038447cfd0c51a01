"""Shared helpers of the protocol and reliability tests: the fake engine, PNG helpers, raw HTTP helpers and the
server fixtures (re-exported by tests/protocol/conftest.py and tests/reliability/conftest.py)."""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import ray_helpers
from fake_link import Controls, share
from PIL import Image
from server_thread import ServerThread

from stylelayer.api import create_app
from stylelayer.core.engine import Cancelled, Progress, StyleResult
from stylelayer.core.memory import LevelPlan
from stylelayer.core.params import StyleParams
from stylelayer.core.regions import Region

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plugins" / "common"))  # the plug-ins' client (its one source) is not a package
import stylelayer_client  # noqa: E402  (re-exported for the tests)


def _control(name: str) -> property:
    """An attribute of a fake kept in its `Controls`, so that it also steers a copy in a Ray actor (fake_link)."""
    return property(lambda self: self._controls.get(name), lambda self, value: self._controls.set(name, value))


class FakeEngine:
    """Identity 'style transfer' with controllable speed, failures and a gate to hold a job in 'running'.

    Pickled into a Ray actor (the protocol suite runs against a Ray pool too), the copy's controls link back to this
    object: the test steers and watches the copy as it would this one.
    """

    step_delay = _control("step_delay")
    fail_with = _control("fail_with")
    gate = _control("gate")
    started = _control("started")
    calls = _control("calls")
    regions = _control("regions")
    plan_error = _control("plan_error")

    def __init__(self, step_delay: float = 0.0, fail_with: BaseException | None = None):
        self._controls: Controls = Controls()
        self.step_delay = step_delay
        self.fail_with = fail_with
        self.gate: threading.Event | None = None  # when set to an Event, iteration 1 waits for it
        self.started = threading.Event()  # set when a job reaches its first iteration
        self.calls: list[tuple[Image.Image | None, list[Image.Image], StyleParams]] = []
        self.regions: list[Sequence[Region]] = []  # each call's regions
        self.device = "cpu"
        self.auto_precision = "fp32"  # what "auto" runs in (the real engine: bf16 where the device runs it fast)
        self.weights_name = "fake"
        self.plan_error: BaseException | None = None

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_controls": share(self._controls)}

    def describe(self) -> dict[str, object]:
        return {"device": "cpu", "weights": "fake", "auto_precision": self.auto_precision}

    def calibrate(self) -> dict[str, float]:
        """What `stylelayer serve` calls after loading an engine; the fake's speed is whatever a test sets."""
        return getattr(self, "seconds_per_unit", {})

    def cache_stats(self) -> dict[str, int]:
        return {"hits": 0, "misses": len(self.calls)}

    def plan_job(self, content_size: tuple[int, int] | None, params: StyleParams) -> list[tuple[LevelPlan, int]]:
        """One whole-image level at the working size (the identity needs no memory worth counting);
        `plan_error` set: raised instead, as the real engine raises a BudgetError."""
        if self.plan_error is not None:
            raise self.plan_error
        width, height = content_size or params.output_size
        scale = min(1.0, params.size / max(width, height)) if params.size else 1.0
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return [(LevelPlan(*size, tile=None, halo=0, optimizer="lbfgs", history=100, estimate=0), params.iterations)]

    def stylize(
        self,
        content: Image.Image | None,
        styles: list[Image.Image],
        params: StyleParams,
        progress: Callable[[Progress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        preview_every: int = 0,
        regions: Sequence[Region] = (),
    ) -> StyleResult:
        self.calls.append((content, styles, params))
        self.regions.append(list(regions))
        started = time.perf_counter()
        out = content.copy() if content is not None else Image.new("RGB", params.output_size, (10, 20, 30))
        total = params.iterations
        for i in range(1, total + 1):
            if should_cancel is not None and should_cancel():
                raise Cancelled()
            self.started.set()
            gate = self.gate  # once: the test may take it away meanwhile
            if gate is not None and i == 1:
                while not gate.wait(0.01):
                    if should_cancel is not None and should_cancel():
                        raise Cancelled()
            failure = self.fail_with
            if failure is not None:
                raise failure
            time.sleep(self.step_delay)
            losses = {"content": 1.0 / i, "style": 2.0 / i, "tv": 0.0, "total": 3.0 / i}
            preview = out.convert("RGB") if preview_every and (i % preview_every == 0 or i == total) else None
            if progress is not None:
                progress(Progress(i, total, losses, time.perf_counter() - started, preview))
        return StyleResult(
            image=out,
            seed=params.seed if params.seed is not None else 424242,
            losses={"content": 0.5, "style": 0.25, "tv": 0.0, "total": 0.75},
            iterations=total,
            elapsed=time.perf_counter() - started,
            params=params,
        )


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def gradient(width: int = 40, height: int = 30, mode: str = "RGB") -> Image.Image:
    """Every pixel different, so any resampling or channel mix-up changes the bytes."""
    img = Image.new(mode, (width, height))
    img.putdata(
        [
            (x * 6 % 256, y * 8 % 256, (x * y) % 256, (x + y * 3) % 256)[: len(mode)]
            for y in range(height)
            for x in range(width)
        ]
    )
    return img


def raw(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) without the client's error mapping, to see exactly what goes over the wire."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


def raw_exchange(url: str, payload: bytes) -> bytes:
    """Send `payload` on a fresh connection and read the answer to the end (the server closes after an error).

    The payload must be one the server reads completely before it answers: a server that closes with unread
    bytes makes the kernel reset the connection, which can drop the answer before the client reads it
    (see OVERSIZE_HEADERS).
    """
    parts = urlsplit(url)
    reply = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(payload)
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def _oversize_headers() -> bytes:
    """A request whose headers reach waitress's limit exactly with their last byte (and never end): waitress has
    read every byte when it answers 431, so the connection closes cleanly instead of being reset."""
    from waitress.adjustments import Adjustments

    head = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    return head + b"y" * (Adjustments.max_request_header_size - len(head))


OVERSIZE_HEADERS = _oversize_headers()


def submit_as(url: str, key: str | None, content: bytes, style: bytes, path: str = "/v1/jobs", **params) -> str:
    """Queue a job as the client with X-Stylelayer-Client `key` (None: without one); its id. /v1/info lists a job's
    id only to that key (the plug-ins' client sends none)."""
    body, content_type = stylelayer_client._job_form(content, style, None, params or None, None, None)
    headers = {"Content-Type": content_type} | ({"X-Stylelayer-Client": key} if key else {})
    status, _, answer = raw(url + path, "POST", body, headers)
    assert status == 202, answer
    return json.loads(answer)["id"]


def info_as(url: str, key: str | None) -> dict:
    """/v1/info as the client with X-Stylelayer-Client `key` (None: without one)."""
    status, _, body = raw(url + "/v1/info", headers={"X-Stylelayer-Client": key} if key else {})
    assert status == 200, body
    return json.loads(body)


def error_of(body: bytes) -> dict:
    payload = json.loads(body)
    assert set(payload) == {"error"} and {"code", "message"} <= set(payload["error"])
    return payload["error"]


# ---- fixtures (a conftest imports these names to make them available to its directory) ------------------------
@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def server_workers() -> object:
    """Where make_server's jobs run: None, the engine in the server's process (tests/protocol/conftest.py also
    gives a Ray pool)."""
    return None


@pytest.fixture
def make_server(
    tmp_path: Path, server_workers: object
) -> Iterator[Callable[..., tuple[ServerThread, stylelayer_client.StylelayerClient]]]:
    """Factory: start a server with a given engine and config; every one is stopped at teardown. With a Ray pool as
    `server_workers`, the engine (or the one config names) is loaded in the pool's first actor instead."""
    servers: list[ServerThread] = []

    def start(engine: object = None, token: str | None = None, **config: object):
        config.setdefault("styles_dir", str(tmp_path / f"styles{len(servers)}"))
        config.setdefault("data_dir", str(tmp_path / f"data{len(servers)}"))
        if server_workers is None:
            app = create_app({"token": token, **config}, engine=engine)
        else:
            server_workers.use(ray_helpers.engine_factory(engine, config))
            app = create_app({"token": token, **config}, workers=server_workers.workers[:1])
            if engine is not None:  # ready when it is loaded in the actor, as a given engine is ready at once
                assert app.extensions["stylelayer"].queue.wait_ready(60)
        srv = ServerThread(app).start()
        servers.append(srv)
        return srv, stylelayer_client.StylelayerClient(srv.url, token=token, timeout=10)

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def server(make_server, fake_engine):
    """(ServerThread, client) around the default fake engine."""
    return make_server(fake_engine)


@pytest.fixture
def client(server) -> stylelayer_client.StylelayerClient:
    return server[1]
