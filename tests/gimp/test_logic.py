"""The GIMP plug-in's pure logic, without gi."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest
import stylelayer_logic as logic
from PIL import Image
from sourcecheck import foreign_imports
from stylelayer_image import LAYER_NAME_MAX, encode_png, is_png, png_size, style_label, style_layer_name
from stylelayer_messages import PluginError
from stylelayer_params import build_params, check_server_url
from stylelayer_settings import ABANDON_AFTER_ENV, ABANDON_AFTER_S, abandon_after_s
from stylelayer_status import progress_fraction, progress_text
from stylelayer_workflow import JobRunner, run_job

from stylelayer.core.params import StyleParams
from stylelayer.install import SHARED_MODULES


def _pixels(w, h, channels):
    return bytes((x * 7 + y * 13 + c * 101) % 256 for y in range(h) for x in range(w) for c in range(channels))


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_encode_png_round_trips_through_pillow(channels, mode):
    w, h = 13, 7
    data = _pixels(w, h, channels)
    png = encode_png(w, h, data, channels=channels)
    assert is_png(png)
    assert png_size(png) == (w, h)
    im = Image.open(io.BytesIO(png))
    assert im.mode == mode
    assert im.size == (w, h)
    assert im.tobytes() == data


def test_encode_png_refuses_wrong_sizes():
    with pytest.raises(ValueError, match="expected 24 bytes"):
        encode_png(2, 3, b"\0" * 23)
    with pytest.raises(ValueError, match="channels"):
        encode_png(2, 3, b"\0" * 30, channels=5)
    with pytest.raises(ValueError, match="positive"):
        encode_png(0, 3, b"")


def test_png_size_refuses_non_png():
    with pytest.raises(PluginError, match="PNG"):
        png_size(b"<html>oops</html>" * 3)
    buf = io.BytesIO()
    Image.new("RGB", (5, 9)).save(buf, "PNG")
    assert png_size(buf.getvalue()) == (5, 9)


def test_rgba_to_rgb():
    assert logic.rgba_to_rgb(bytes([1, 2, 3, 4, 5, 6, 7, 8])) == bytes([1, 2, 3, 5, 6, 7])
    assert logic.rgba_to_rgb(b"") == b""


def test_build_params_maps_dialog_values_onto_server_params():
    params = build_params(iterations=50, strength=2.5, preserve_colors=True, size=256, seed=7)
    weight = 2.5 * StyleParams().style_weight  # strength scales the server's default style weight
    assert params == {
        "iterations": 50,
        "style_weight": weight,
        "preserve_colors": True,
        "size": 256,
        "seed": 7,
        "init": "varied",  # a seed only makes a variation with the content jittered by it
    }
    # the server's own validation accepts it
    parsed = StyleParams.from_dict(params)
    assert (parsed.iterations, parsed.style_weight, parsed.preserve_colors, parsed.size, parsed.seed) == (
        50,
        weight,
        True,
        256,
        7,
    )
    # strength 1 is the engine's default style weight; seed 0 (or -1, as before) means "a new variation each run"
    default = build_params(iterations=1, strength=1.0, preserve_colors=False, size=0, seed=0)
    assert "seed" not in default and "init" not in default  # the content as it is: the server picks a seed
    assert "seed" not in build_params(iterations=1, seed=-1)
    assert default["style_weight"] == StyleParams().style_weight
    StyleParams.from_dict(default)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"iterations": 0}, "iterations"),
        ({"iterations": 10_001}, "iterations"),
        ({"iterations": True}, "iterations"),
        ({"strength": 0.0}, "style strength"),
        ({"strength": float("nan")}, "style strength"),
        ({"strength": 101.0}, "style strength"),
        ({"size": -1}, "working size"),
        ({"size": 8193}, "working size"),
    ],
)
def test_build_params_refuses_nonsense(kwargs, field):
    values = {"iterations": 10, "strength": 1.0, "preserve_colors": False, "size": 64}
    values.update(kwargs)
    with pytest.raises(PluginError, match=field):
        build_params(**values)


def test_style_layer_name():
    def name(path, existing=frozenset()):
        return style_layer_name(style_label(path), existing)  # as the plug-in names its layer

    assert name("/art/starry_night.jpg") == "Style: starry night"
    assert name("C:\\art\\the-scream.PNG".replace("\\", os.sep)) == "Style: the scream"
    taken = {"Style: wave", "Style: wave #2"}
    assert name("/a/wave.png", taken) == "Style: wave #3"
    long = name("/a/" + "x" * 200 + ".png")
    assert len(long) <= LAYER_NAME_MAX and long.endswith("…")


def test_check_server_url():
    assert check_server_url(" http://127.0.0.1:8765/ ") == "http://127.0.0.1:8765"
    assert check_server_url("https://box:1") == "https://box:1"
    assert check_server_url("http://a") == "http://a"
    for bad in ("", "127.0.0.1:8765", "ftp://x", "http://", "https://", "https:///"):
        with pytest.raises(PluginError, match="server URL"):
            check_server_url(bad)


def test_scaled_to_fit():
    assert logic.scaled_to_fit(100, 50, 200) == (100, 50)
    assert logic.scaled_to_fit(4000, 3000, 2048) == (2048, 1536)
    assert logic.scaled_to_fit(10, 5000, 100) == (1, 100)


def test_progress_fraction_and_text():
    # the server's job JSON: state, iteration, total, eta_s, queue_position
    assert progress_fraction({"state": "running", "iteration": 3, "total": 12}) == 0.25
    assert progress_fraction({"iteration": 30, "total": 12}) == 1.0
    assert progress_fraction({"iteration": 3, "iterations": 12}) == 0.25
    assert progress_fraction({"progress": 0.25}) == 0.25
    assert progress_fraction({"progress": 50}) == 0.5
    assert progress_fraction({"state": "queued", "iteration": 0, "total": 0}) is None
    assert progress_fraction({"iteration": True, "total": 2}) is None
    assert progress_fraction(None) is None

    def text(status):
        return progress_text(status, logic.PROGRESS_TITLE)  # as the job runner words it

    running = {"state": "running", "iteration": 3, "total": 12, "eta_s": 4.2}
    assert text(running) == "Neural style transfer: iteration 3/12, about 5 s left"
    assert text({"state": "queued", "queue_position": 2}) == "Neural style transfer: queued on the server (2 ahead)…"
    assert text({"state": "queued", "queue_position": 0}) == "Neural style transfer: queued on the server…"
    assert text({"state": "done", "iteration": 0, "total": 5}) == "Neural style transfer: done"
    assert text("nonsense") == "Neural style transfer"


def test_job_runner_reports_progress_and_result():
    gate = threading.Event()

    def work(on_progress, should_cancel):
        on_progress({"state": "running", "iteration": 1, "total": 4}, None)
        gate.wait(5)
        return b"png"

    runner = JobRunner(work, logic.PROGRESS_TITLE).start()
    deadline = time.monotonic() + 5
    while runner.fraction is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.fraction == 0.25 and runner.text == "Neural style transfer: iteration 1/4"
    assert not runner.wait(0.05)
    gate.set()
    assert runner.wait(5)
    assert runner.result == b"png" and runner.error is None


def test_job_runner_cancel_reaches_the_work():
    def work(on_progress, should_cancel):
        while not should_cancel():
            time.sleep(0.01)
        raise RuntimeError("cancelled by the user")

    runner = JobRunner(work).start()
    assert not runner.wait(0.1)
    runner.cancel()
    assert runner.wait(5)
    assert runner.cancelled
    assert isinstance(runner.error, RuntimeError)


def test_plugin_main_file_is_executable_and_named_like_its_folder(plugin_dir):
    main = plugin_dir / "stylelayer_gimp.py"
    assert main.parent.name == main.stem
    assert os.access(main, os.X_OK)
    assert main.read_text().startswith("#!/usr/bin/env python3\n")


def test_plugin_uses_only_stdlib_and_gi(plugin_dir):
    own = ["stylelayer_dialog.py", "stylelayer_gimp.py", "stylelayer_logic.py", "stylelayer_managed_gimp.py"]
    files = sorted(plugin_dir.glob("*.py"))
    assert [f.name for f in files] == sorted([*own, *SHARED_MODULES])
    allowed = {"gi", *(Path(name).stem for name in [*own, *SHARED_MODULES])}
    assert foreign_imports(files, allowed) == []
    logic_src = (plugin_dir / "stylelayer_logic.py").read_text()
    assert "import gi" not in logic_src


def test_presets_decide_size_and_iterations_unless_custom():
    assert logic.preset_size_iterations("full", 512, 7) == (0, 200)  # the layer's own size, coarse to fine
    assert logic.preset_size_iterations("preview", 512, 7) == (256, 60)
    assert logic.preset_size_iterations(logic.CUSTOM, 512, 7) == (512, 7)  # a script's own values
    assert logic.preset_of(512, 200) == "normal" and logic.preset_of(512, 7) == logic.CUSTOM


def test_last_values_survive_a_failed_run_and_only_the_user_reads_them(tmp_path):
    path = str(tmp_path / logic.LAST_VALUES_FILE)
    assert logic.load_last_values(path) == {}
    values = {
        "style-file": "/x/starry.png",
        "preset": "full",
        "server-token": "s3cret",
        "server-url": "http://h:1",
        "run-mode": "interactive",
    }
    logic.save_last_values(path, {**values, logic.LAST_SEED: 77})
    kept = {k: v for k, v in values.items() if k not in ("run-mode", "server-token")}  # the token has its own file
    assert logic.load_last_values(path) == {**kept, logic.LAST_SEED: 77}
    assert "s3cret" not in (tmp_path / logic.LAST_VALUES_FILE).read_text()
    assert (tmp_path / logic.LAST_VALUES_FILE).stat().st_mode & 0o777 == 0o600
    (tmp_path / logic.LAST_VALUES_FILE).write_text("{not json")
    assert logic.load_last_values(path) == {}


def test_status_lines_go_to_the_log_only_when_asked(tmp_path):
    log = tmp_path / "status.log"
    logic.log_status("status: Connected", {})
    assert not log.exists()
    logic.log_status("status: Connected\nto it", {logic.LOG_ENV: str(log)})
    logic.log_status("estimate: about 3 min", {logic.LOG_ENV: str(log)})
    assert log.read_text().splitlines() == ["status: Connected to it", "estimate: about 3 min"]


def test_abandon_after_from_the_environment():
    assert abandon_after_s({}) == ABANDON_AFTER_S == 60
    assert abandon_after_s({ABANDON_AFTER_ENV: "7"}) == 7
    assert abandon_after_s({ABANDON_AFTER_ENV: "1"}) == 5  # never below five seconds
    assert abandon_after_s({ABANDON_AFTER_ENV: "soon"}) == 60


def test_the_job_checks_the_server_first_and_asks_to_be_abandoned():
    calls = []

    class Client:
        def probe(self):
            calls.append("probe")
            return {"api": 1}

        def run_job(self, content_png, **kw):
            calls.append(("run_job", kw["abandon_after"]))
            return b"png"

    assert run_job(Client(), b"c", b"s", params={}) == (b"png", None)
    assert calls == ["probe", ("run_job", 60)]
