"""A style per region over HTTP: region masks with their styles (uploads or library ids) reach the engine, a mask of
another size is stretched with a note, and bad regions are 400s naming the field."""

from __future__ import annotations

import json
import threading
import time

import pytest
from PIL import Image
from protocol_helpers import FakeEngine, error_of, gradient, png_bytes, raw, stylelayer_client
from server_thread import ServerThread

from stylelayer.api import create_app

CONTENT = png_bytes(gradient(40, 30))
STYLE = png_bytes(gradient(16, 16))


def _mask(width: int, height: int, value: int = 255) -> bytes:
    mask = Image.new("L", (width, height), 0)
    mask.paste(value, (0, 0, width, height // 2))
    return png_bytes(mask)


def _post(url: str, fields: list[tuple[str, str | None, bytes]], path: str = "/v1/jobs"):
    """(status, headers, JSON or bytes) of a job form with these extra fields."""
    parts = [("params", None, b'{"iterations": 1, "seed": 1}'), ("content", "c.png", CONTENT), *fields]
    body, ctype = stylelayer_client._multipart(parts)
    status, headers, data = raw(f"{url}{path}", "POST", body, {"Content-Type": ctype})
    return status, headers, data


def test_regions_with_uploaded_and_library_styles_reach_the_engine(server, fake_engine) -> None:
    srv, client = server
    library = client.add_style("scream", png_bytes(gradient(12, 12)))
    fields = [
        ("region1_mask", "sky.png", _mask(80, 60)),  # twice the content's size: stretched, with a note
        ("region1_style", "s.png", STYLE),
        ("region1_style", "t.png", png_bytes(gradient(10, 10))),
        ("region2_mask", "ground.png", _mask(40, 30)),
        ("region2_style_id", None, library["id"].encode()),
    ]
    status, headers, data = _post(srv.url, fields)
    assert status == 202, data
    assert headers["X-Stylelayer-Notes"] == (
        "region 1's mask is 80x60 px, the content 40x30: the mask is stretched over the content"
    )
    job = json.loads(data)
    deadline = time.monotonic() + 10
    while client.status(job["id"])["state"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    regions = fake_engine.regions[-1]
    assert [r.mask.size for r in regions] == [(80, 60), (40, 30)]
    assert [[s.size for s in r.styles] for r in regions] == [[(16, 16), (10, 10)], [(12, 12)]]
    _, styles, _ = fake_engine.calls[-1]
    assert styles == []  # no global style: what no region covers keeps the content


def test_sync_stylize_takes_regions_and_says_what_it_stretched(server, fake_engine) -> None:
    srv, _ = server
    status, headers, _ = _post(
        srv.url, [("region1_mask", "m.png", _mask(20, 15)), ("region1_style", "s.png", STYLE)], "/v1/stylize"
    )
    assert status == 200
    assert "region 1's mask is 20x15 px" in headers["X-Stylelayer-Notes"]
    assert len(fake_engine.regions[-1]) == 1


@pytest.mark.parametrize(
    ("fields", "status", "code", "field"),
    [
        (
            [("region1_mask", "m.png", _mask(40, 30, 0)), ("region1_style", "s.png", STYLE)],
            400,
            "bad_region",
            "region1_mask",
        ),
        ([("region1_mask", "m.png", _mask(40, 30))], 400, "missing_field", "region1_style"),
        ([("region1_style", "s.png", STYLE)], 400, "missing_field", "region1_mask"),
        (
            [("region2_mask", "m.png", _mask(40, 30)), ("region2_style", "s.png", STYLE)],
            400,
            "missing_field",
            "region2_mask",
        ),
        (
            [("region1_mask", "m.png", b"not a png"), ("region1_style", "s.png", STYLE)],
            415,
            "not_an_image",
            "region1_mask",
        ),
        (
            [("region1_mask", "m.png", _mask(40, 30)), ("region1_style_id", None, b"0" * 16)],
            404,
            "style_not_found",
            "region1_style_id",
        ),
    ],
)
def test_bad_regions_are_refused_naming_the_field(server, fields, status, code, field) -> None:
    srv, client = server
    got, _, data = _post(srv.url, fields)
    error = error_of(data)
    assert (got, error["code"], error["field"]) == (status, code, field), error
    assert client.health()["status"] == "ok"


def test_region_weights_must_match_the_regions(server) -> None:
    srv, _ = server
    body, ctype = stylelayer_client._multipart(
        [
            ("params", None, b'{"region_weights": [1, 2]}'),
            ("content", "c.png", CONTENT),
            ("region1_mask", "m.png", _mask(40, 30)),
            ("region1_style", "s.png", STYLE),
        ]
    )
    status, _, data = raw(f"{srv.url}/v1/jobs", "POST", body, {"Content-Type": ctype})
    assert status == 400 and error_of(data)["field"] == "region_weights"


def test_a_job_with_regions_runs_again_after_a_restart(tmp_path) -> None:
    """The store keeps the regions' files: a job running when the server stopped runs again with the same regions."""
    data = str(tmp_path / "data")
    engine = FakeEngine()
    engine.gate = threading.Event()
    srv = ServerThread(create_app({"data_dir": data}, engine=engine)).start()
    fields = [
        ("style", "g.png", png_bytes(gradient(8, 8))),
        ("region1_mask", "m.png", _mask(20, 15)),
        ("region1_style", "s.png", STYLE),
        ("region1_style", "t.png", png_bytes(gradient(10, 10))),
        ("region2_mask", "n.png", _mask(40, 30)),
        ("region2_style", "u.png", png_bytes(gradient(12, 12))),
    ]
    status, _, body = _post(srv.url, fields)
    assert status == 202, body
    assert engine.started.wait(5)
    srv.stop()

    again = FakeEngine()
    srv = ServerThread(create_app({"data_dir": data}, engine=again)).start()
    try:
        deadline = time.monotonic() + 10
        while not again.regions:
            assert time.monotonic() < deadline, "the job did not run again"
            time.sleep(0.01)
        regions = again.regions[-1]
        assert [r.mask.size for r in regions] == [(20, 15), (40, 30)]
        assert [[s.size for s in r.styles] for r in regions] == [[(16, 16), (10, 10)], [(12, 12)]]
        assert [s.size for s in again.calls[-1][1]] == [(8, 8)]  # the global style is not mistaken for a region's
    finally:
        srv.stop()
