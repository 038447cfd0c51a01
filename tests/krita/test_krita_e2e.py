"""End-to-end in a REAL Krita 5 (full GUI under xvfb-run) against a live stylelayer server with the real engine.

A throwaway HOME gets the plug-in through `stylelayer.install.krita.install` plus the test-only driver plug-in
(tests/krita/driver_plugin), both enabled in its kritarc. The driver (krita_driver.py) opens a small real
photo, runs the plug-in, saves a .kra with batch mode on and writes result files; everything is judged here
from those files, never from Krita's exit code. Each Krita run is bounded by `timeout -k 5`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from testimages import real_image

from stylelayer.install import krita as kinstall

pytestmark = pytest.mark.krita

HERE = Path(__file__).resolve().parent
KRITA_TIMEOUT = int(os.environ.get("STYLELAYER_KRITA_TIMEOUT", "90"))
PARAMS = {"size": 64, "iterations": 3, "seed": 1}


def _require_host() -> None:
    missing = [tool for tool in ("krita", "xvfb-run") if shutil.which(tool) is None]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not on PATH (run tests/hosts/setup_krita.sh as root)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI is set but the Krita e2e host is missing: {reason}")
    pytest.skip(reason)


def _image(name: str, tmp: Path, side: int) -> Path:
    """The test image `name` as a PNG file of at most `side` pixels a side, for Krita to open."""
    out = tmp / f"{name}.png"
    real_image(name, side).save(out)
    return out


@pytest.fixture(scope="module")
def krita_home(tmp_path_factory):
    _require_host()
    home = tmp_path_factory.mktemp("krita-home")
    resources = home / ".local" / "share" / "krita"
    kinstall.install(resources)  # the real installer, kritarc derived as $HOME/.config/kritarc
    pykrita = resources / "pykrita"
    shutil.copytree(HERE / "driver_plugin" / "stylelayer_e2e", pykrita / "stylelayer_e2e")
    shutil.copy2(HERE / "driver_plugin" / "stylelayer_e2e.desktop", pykrita)
    kritarc = home / ".config" / "kritarc"
    kritarc.write_text(kinstall.set_plugin_enabled(kritarc.read_text(), "stylelayer_e2e"))
    (home / "run").mkdir(mode=0o700)
    return home


@pytest.fixture(scope="module")
def cpu_engine():
    from stylelayer.core.engine import StyleEngine

    return StyleEngine(weights="caffe", device="cpu")


@pytest.fixture(scope="module")
def server(cpu_engine):
    from server_thread import ServerThread

    from stylelayer.api import create_app

    with ServerThread(create_app({}, engine=cpu_engine)) as srv:
        yield srv


TOKEN = "krita-e2e-token"


@pytest.fixture(scope="module")
def token_server(cpu_engine):
    """A server that requires a token, as one on another machine does (same engine: the tests run one at a time)."""
    from server_thread import ServerThread

    from stylelayer.api import create_app

    with ServerThread(create_app({"token": TOKEN}, engine=cpu_engine)) as srv:
        yield srv


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("krita-inputs")
    return {"content": _image("tubingen", tmp, 96), "style": _image("starry_night", tmp, 128)}


def krita_job(mode: str, inputs: dict, server_url: str, **extra) -> dict:
    """What the driver runs: `mode` on the test image and style against `server_url`, with PARAMS unless given."""
    return {
        "mode": mode,
        "image": str(inputs["content"]),
        "style": str(inputs["style"]),
        "server_url": server_url,
        "params": PARAMS,
        **extra,
    }


def run_krita(home: Path, out: Path, config: dict, timeout: int = KRITA_TIMEOUT) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    config = {"stacks_after_s": timeout - 30, **config, "out_dir": str(out)}
    cfg = out / "config.json"
    cfg.write_text(json.dumps(config))
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "STYLELAYER_KRITA_DRIVER": str(HERE / "krita_driver.py"),
        "STYLELAYER_KRITA_CONFIG": str(cfg),
        "STYLELAYER_KRITA_RESULT": str(out / "result.json"),
    }
    env.pop("PYTHONPATH", None)
    cmd = ["timeout", "-k", "5", str(timeout), "xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", "krita", "--nosplash"]
    start = time.time()
    proc = subprocess.run(cmd, env=env, cwd=out, capture_output=True, text=True)
    elapsed = time.time() - start
    (out / "krita.log").write_text(proc.stdout + proc.stderr)
    result_file = out / "result.json"
    if not result_file.is_file():
        crash = out / "result.json.crash.txt"
        detail = crash.read_text() if crash.is_file() else (proc.stdout + proc.stderr)[-3000:]
        stacks = out / "stacks.txt"
        if stacks.is_file() and stacks.stat().st_size:
            detail += "\n--- where Krita's threads were:\n" + stacks.read_text()[-6000:]
        pytest.fail(f"Krita wrote no result file (exit {proc.returncode}, {elapsed:.1f} s):\n{detail}")
    result = json.loads(result_file.read_text())
    result["krita_wall_s"] = round(elapsed, 1)
    assert "crash" not in result, result["crash"]
    return result


def kra_stack(path: Path) -> list[dict]:
    """Top-level layers of a .kra, bottom to top (maindoc.xml lists them top first)."""
    with zipfile.ZipFile(path) as zf:
        root = ET.fromstring(zf.read("maindoc.xml"))
        names = set(zf.namelist())
    ns = {"k": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
    image = root.find("k:IMAGE", ns) if ns else root.find("IMAGE")
    layers = image.find("k:layers", ns) if ns else image.find("layers")
    stack = [dict(el.attrib) for el in list(layers) if el.attrib.get("nodetype") != "selectionmask"]
    for layer in stack:
        assert any(n.endswith("/layers/" + layer["filename"]) for n in names), layer
    return list(reversed(stack))


def expected_layer(server_png: bytes, size: tuple[int, int], mask_value: int | None) -> bytes:
    """The server's RGBA result as Krita BGRA, alpha scaled by a uniform selection value."""
    image = Image.open(io.BytesIO(server_png)).convert("RGBA")
    assert image.size == size
    raw = bytearray(image.tobytes("raw", "BGRA"))
    if mask_value is not None and mask_value != 255:
        raw[3::4] = bytes((a * mask_value + 127) // 255 for a in raw[3::4])
    return bytes(raw)


def layers(result: dict) -> list:
    """The driver's stack without the global selection mask Krita adds for doc.setSelection."""
    return [entry for entry in result["stack"] if entry[1] != "selectionmask"]


def crop(data: bytes, size: tuple[int, int], rect: list[int], channels: int) -> bytes:
    """`rect` (x, y, w, h) out of a row-major buffer of `size` with `channels` bytes a pixel."""
    x, y, w, h = rect
    stride = size[0] * channels
    return b"".join(data[(y + j) * stride + x * channels : (y + j) * stride + (x + w) * channels] for j in range(h))


def check_masked(result: dict, out: Path, rect: list[int], mask: bytes):
    """The new layer has the server's pixels inside the selection and is transparent everywhere else (what shows
    with its mask disabled), covers no more than the selection's bounds, and has a transparency mask named
    Selection holding `mask` (over `rect`; 0 elsewhere): as Krita shows it, the server's result in the selection's
    shape."""
    assert result["new_children"] == [["Selection", "transparencymask"]], result["new_children"]
    size = tuple(result["size"])
    server_png = (out / "server_result.png").read_bytes()
    plain = expected_layer(server_png, (rect[2], rect[3]), None)
    canvas = (out / "new_canvas.bgra").read_bytes()
    layer = crop(canvas, size, rect, 4)
    assert len(layer) == len(plain)
    assert layer[3::4] == bytes(a if m else 0 for a, m in zip(plain[3::4], mask, strict=True))  # clear outside
    assert all(layer[i : i + 3] == plain[i : i + 3] for i in range(0, len(plain), 4) if mask[i // 4])
    assert sum(canvas[3::4]) == sum(layer[3::4])  # nothing beyond the selection's bounds: no black under the mask
    x, y, w, h = next(entry[2] for entry in layers(result) if entry[0] == result["layer_name"])
    assert rect[0] <= x and rect[1] <= y and x + w <= rect[0] + rect[2] and y + h <= rect[1] + rect[3]
    whole = (out / "new_mask.a8").read_bytes()
    assert crop(whole, size, rect, 1) == mask  # ...exactly
    assert sum(whole) == sum(mask)  # and nothing outside the selection's bounds
    projection = crop((out / "new_projection.bgra").read_bytes(), size, rect, 4)
    assert projection[3::4] == bytes((a * m + 127) // 255 for a, m in zip(plain[3::4], mask, strict=True)) or (
        max(abs(p - (a * m + 127) // 255) for p, a, m in zip(projection[3::4], plain[3::4], mask, strict=True)) <= 1
    )  # Krita's own rounding may differ by one


def check_success(result: dict, out: Path, inputs: dict, rect: list[int], mask_value: int | None = None):
    assert result["ok"], result.get("traceback") or result.get("error_message")
    name = result["layer_name"]
    assert name == "Style: starry night"
    stack_names = [entry[0] for entry in layers(result)]
    original = result["original"]["name"]
    assert stack_names == [*result["stack_before"][:1], name] and stack_names[0] == original
    assert result["new_index"] == 1  # (Krita 5.1 ignores setActiveNode right after addChildNode: not asserted)
    new_entry = layers(result)[1]
    assert new_entry[1] == "paintlayer"
    # pixels: exactly the server's answer (masked), at the same position; the source untouched
    server_png = (out / "server_result.png").read_bytes()
    if mask_value is None:
        assert new_entry[2] == rect
        assert result["new_children"] == []
        assert (out / "new_layer.bgra").read_bytes() == expected_layer(server_png, (rect[2], rect[3]), mask_value)
    else:  # a uniform selection: a transparency mask of that value over the selection (no feather: not hard-edged)
        check_masked(result, out, rect, bytes([mask_value]) * (rect[2] * rect[3]))
    assert result["original_unchanged"] is True
    assert (out / "orig_after.bgra").read_bytes() == (out / "orig_before.bgra").read_bytes()
    with Image.open(inputs["content"]) as src:
        want = src.convert("RGBA").tobytes("raw", "BGRA")
    assert (out / "orig_before.bgra").read_bytes() == want  # the layer Krita loaded is the photo we gave it
    # the saved .kra agrees: the new layer right above the original, same offset
    assert result["saved"] is True
    stack = kra_stack(out / "doc.kra")
    assert [layer["name"] for layer in stack] == [original, name]
    assert (int(stack[1].get("x", 0)), int(stack[1].get("y", 0))) == (0, 0)
    assert stack[1]["nodetype"] == "paintlayer"


def test_entry_function_in_real_krita(krita_home, server, inputs, tmp_path):
    out = tmp_path / "run"
    result = run_krita(
        krita_home,
        out,
        krita_job("function", inputs, server.url),
    )
    w, h = result["size"]
    check_success(result, out, inputs, [0, 0, w, h])
    assert result["progress_calls"] >= 1


def test_dialog_with_selection_in_real_krita(krita_home, server, inputs, tmp_path):
    """The action opens the dialog; its QThread runs the job while the GUI thread keeps ticking."""
    out = tmp_path / "run"
    selection = [10, 8, 40, 30, 200]
    result = run_krita(
        krita_home,
        out,
        krita_job("dialog", inputs, server.url, selection=selection),
    )
    assert result["action_text"] == "Style Transfer…"
    check_success(result, out, inputs, selection[:4], mask_value=selection[4])
    dialog = result["dialog"]
    assert dialog["messages"] == [[True, "Style: starry night"]]
    assert dialog["gui_ticks"] >= 2  # the event loop ran during the job: Krita did not freeze
    assert dialog["saved_url"] == server.url  # persisted with Krita.instance().writeSetting
    assert dialog["loss_points"] == PARAMS["iterations"]  # the live curve got every iteration's loss
    assert dialog["curve_colours"] > 2  # and drew it (a frame on a background alone is 2 colours)


def test_server_down_leaves_document_unchanged(krita_home, inputs, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    result = run_krita(
        krita_home,
        out,
        krita_job("dialog", inputs, f"http://127.0.0.1:{port}"),
    )
    assert result["ok"] is False
    assert result["dialog"]["messages"] and result["dialog"]["messages"][0][0] is False
    message = result["dialog"]["messages"][0][1]
    assert message == (
        f"Cannot reach the stylelayer server at http://127.0.0.1:{port}. Start it with 'stylelayer "
        "serve' on that machine, or correct the server address."
    )
    assert [entry[0] for entry in layers(result)] == result["stack_before"]
    assert result["original_unchanged"] is True
    assert not (out / "server_result.png").exists()
    assert [layer["name"] for layer in kra_stack(out / "doc.kra")] == result["stack_before"]


def test_cancel_in_dialog_leaves_document_unchanged(krita_home, server, inputs, tmp_path):
    out = tmp_path / "run"
    result = run_krita(
        krita_home,
        out,
        krita_job("dialog", inputs, server.url, params={**PARAMS, "iterations": 500}, cancel_on_progress=True),
    )
    assert result["ok"] is False
    assert result["dialog"]["messages"] == [[False, "The style transfer was cancelled; the image is unchanged."]]
    assert [entry[0] for entry in layers(result)] == result["stack_before"]
    assert result["original_unchanged"] is True


def ellipse_region(mask: bytes, size: tuple[int, int]) -> list[int]:
    """Bounds (x, y, w, h) of the selected pixels of a whole-canvas mask."""
    w, _h = size
    xs = [i % w for i, m in enumerate(mask) if m]
    ys = [i // w for i, m in enumerate(mask) if m]
    return [min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1]


def test_ellipse_with_a_token_server_twice_then_undo(krita_home, token_server, inputs, tmp_path):
    """A remote-style server (token), Test connection, the estimate, an elliptical selection masked by an editable
    transparency mask, a second Apply that still paints the original layer, and Undo taking it all back."""
    from stylelayer_image import feather_mask, open_edges

    out = tmp_path / "run"
    result = run_krita(
        krita_home,
        out,
        krita_job(
            "dialog",
            inputs,
            token_server.url,
            token=TOKEN,
            ellipse=[12, 10, 60, 44],
            test_connection=True,
            add_to_library=True,
            runs=3,
            keep_from_run=2,
            undo=2,
            dialog_timeout_s=60,
        ),
        timeout=180,
    )
    # the token is kept in the plug-in's own file, readable by the user only, not in kritarc
    token_file = krita_home / ".config" / "stylelayer" / "plugin-token"
    assert token_file.read_text().strip() == TOKEN and token_file.stat().st_mode & 0o777 == 0o600
    assert TOKEN not in (krita_home / ".config" / "kritarc").read_text()
    assert result["ok"], result.get("traceback") or result.get("error_message")
    texts, original, size = result["texts"], result["original"]["name"], tuple(result["size"])
    version = __import__("stylelayer").__version__
    assert texts["status"] == f"Connected to stylelayer {version} at {token_server.url} (CPU, token accepted)."
    assert texts["estimate"].startswith("Estimated time: about "), texts["estimate"]
    # Add to library: the style file is stored on the server, shown with its thumbnail and picked from there
    assert texts["library"] == [1, "starry night", True, True, False]
    assert texts["status_added"] == texts["status"] + " Added “starry night” to its style library."
    selection = (out / "selection.mask").read_bytes()
    rect = ellipse_region(selection, size)
    name = Path(inputs["content"]).name
    where = f"{rect[2]}×{rect[3]} px (the selection's part of it)"
    assert texts["target"] == f"Paints layer “{original}” of “{name}”: {where}."
    assert texts["targets"] == [texts["target"]] * 2  # after a run Krita made the result active: still the photo
    assert result["sources"] == [original] * 3
    # a second Apply: a new variation (its seed shown in the dialog), on top of the first where it is seen; a
    # third with Keep ticked: the second's variation again, on top
    names = [original, "Style: starry night", "Style: starry night #2", "Style: starry night #3"]
    assert [entry[0] for entry in layers(result)] == names
    seeds = texts["seeds"]
    assert seeds[0] != seeds[1] == seeds[2] and all(1 <= seed < 2**31 for seed in seeds), seeds
    pixels = []
    for i in range(3):
        with Image.open(out / f"server_result_{i}.png") as image:
            pixels.append(image.tobytes())
    assert pixels[0] != pixels[1] == pixels[2]
    # the last result: the server's pixels, shaped by the ellipse with its edge faded in, in an editable mask
    crop_mask = crop(selection, size, rect, 1)
    edges = open_edges(rect, rect, (0, 0, *size))
    want = feather_mask(crop_mask, rect[2], rect[3], open_edges=edges)
    check_masked(result, out, rect, want)
    projection = (out / "new_projection.bgra").read_bytes()
    outside = [i for i, m in enumerate(selection) if m == 0]
    assert len(outside) > size[0] * size[1] // 2 and all(projection[4 * i + 3] == 0 for i in outside)
    inside = bytes(crop_mask)
    assert want.count(255) > inside.count(255) // 2 and min(w for w, m in zip(want, inside, strict=True) if m) > 0
    assert result["original_unchanged"] is True
    # Undo: first the mask of the last result, then its layer; the earlier results stay
    with_mask = ["transparencymask"]
    assert result["after_undo"] == [
        [[original, []], [names[1], with_mask], [names[2], with_mask], [names[3], []]],
        [[original, []], [names[1], with_mask], [names[2], with_mask]],
    ]
    # the first open greeted with no failure; the token placeholder is whole
    assert texts["on_open"][0] == "Not connected yet: press Test connection, or Apply." or texts["on_open"][
        0
    ].startswith("Connected to"), texts["on_open"]
    assert texts["token_placeholder"] == ["remote server only", True]


def test_without_a_selection_undo_removes_the_layer_in_one_step(krita_home, server, inputs, tmp_path):
    out = tmp_path / "run"
    result = run_krita(
        krita_home,
        out,
        krita_job("function", inputs, server.url, undo=1),
    )
    assert result["ok"], result.get("traceback")
    assert [entry[0] for entry in layers(result)] == [result["original"]["name"], "Style: starry night"]
    assert result["after_undo"] == [[[result["original"]["name"], []]]]


def test_full_resolution_render_has_the_canvas_size(krita_home, server, inputs, tmp_path):
    """Size 0 on a 640x480 canvas: two levels (320x240, then 640x480), progress naming them, a layer of the
    canvas's own size with the server's pixels."""
    canvas = tmp_path / "canvas640.png"
    real_image("tubingen").resize((640, 480), Image.Resampling.LANCZOS).save(canvas)
    out = tmp_path / "run"
    result = run_krita(
        krita_home,
        out,
        krita_job(
            "dialog", inputs, server.url, image=str(canvas), params={"size": 0, "iterations": 4}, dialog_timeout_s=200
        ),
        timeout=300,
    )
    assert result["ok"], result.get("traceback") or result.get("error_message")
    assert result["texts"]["preset_custom"] == "Custom"  # size 0 with 4 iterations is none of the presets
    assert layers(result)[1][2] == [0, 0, 640, 480]
    server_png = (out / "server_result.png").read_bytes()
    assert Image.open(io.BytesIO(server_png)).size == (640, 480)
    assert (out / "new_layer.bgra").read_bytes() == expected_layer(server_png, (640, 480), None)
    progress = result["texts"]["progress"]
    assert any("level 2/2" in text for text in progress), progress
    # iterations counted over the whole job (4 + 2), from the first line on: no "0/4" that turns into "1/6"
    assert all(text.startswith("Iteration ") and "/6," in text for text in progress if "Iteration" in text), progress


def test_what_the_painter_reads_when_the_server_is_wrong(krita_home, token_server, inputs, tmp_path):
    """Another web server, no token, a wrong token, another version: each its own text, also in the status line."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Other(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/v1/info") and self.server.server_port == versioned.server_port:
                body = json.dumps({"api": 2, "version": "2.0.0"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    plain, versioned = HTTPServer(("127.0.0.1", 0), Other), HTTPServer(("127.0.0.1", 0), Other)
    for httpd in (plain, versioned):
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    plain_url = f"http://127.0.0.1:{plain.server_port}"
    versioned_url = f"http://127.0.0.1:{versioned.server_port}"
    try:
        out = tmp_path / "run"
        result = run_krita(
            krita_home,
            out,
            {
                "mode": "dialog",
                "image": str(inputs["content"]),
                "style": str(inputs["style"]),
                "server_url": token_server.url,
                "params": PARAMS,
                "attempts": [[plain_url, ""], [token_server.url, ""], [token_server.url, "guess"], [versioned_url, ""]],
                "missing_style": str(tmp_path / "no-such-style.png"),
            },
        )
    finally:
        plain.shutdown()
        versioned.shutdown()
    attempts = result["texts"]["attempts"]
    url = token_server.url
    assert [a[1] for a in attempts] == [
        f"{plain_url} answers, but it is not a stylelayer server. Check the address and port: the server prints its "
        "URL when it starts (usually http://127.0.0.1:8765), with nothing after the port.",
        f"The server at {url} requires a token. Paste the token the server was started with (STYLELAYER_TOKEN or "
        "its --token-file) into the Token field.",
        f"The server at {url} did not accept the token. Paste the token the server was started with "
        "(STYLELAYER_TOKEN or its --token-file) into the Token field.",
        f"The server at {versioned_url} does not match this plug-in (the server runs stylelayer 2.0.0 (API 2); this "
        "client needs API 1 from version 0.1.0 on). Install the same stylelayer version on both sides: pip install "
        "-U stylelayer, then stylelayer install-plugin.",
    ]
    assert all(ok is False and status == "Not connected: " + message for ok, message, status in attempts)
    missing = tmp_path / "no-such-style.png"  # the same words as GIMP's (tests/gimp/test_gimp_e2e.py)
    assert result["texts"]["missing_style"] == f"The style image {missing} does not exist: choose another file."
    assert [entry[0] for entry in layers(result)] == result["stack_before"] and result["original_unchanged"]


def test_a_server_killed_mid_job_is_an_interrupted_run(krita_home, inputs, tmp_path):
    """`kill -9` of the server while the dialog's job runs: the dialog says the run was interrupted and what to do
    (not "cannot reach … start it"), the status line says it is not connected, no estimate stays up, and the
    document is as it was."""
    import threading

    from serve_process import kill_when_running, start_serve

    proc, url = start_serve(tmp_path)
    killed = {}
    try:
        watcher = threading.Thread(target=lambda: killed.update(kill_when_running(proc, url)))
        watcher.start()
        out = tmp_path / "run"
        result = run_krita(
            krita_home,
            out,
            krita_job("dialog", inputs, url, params={**PARAMS, "iterations": 5000}, dialog_timeout_s=120),
            timeout=200,
        )
        watcher.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed.get("state") == "running", killed
    message = (
        f"The run was interrupted: the stylelayer server at {url} stopped while it worked on the layer. The image is "
        "unchanged. Start the server again ('stylelayer serve'), then press Apply again."
    )
    assert result["dialog"]["messages"] == [[False, message]]
    assert result["texts"]["status_after"] == "Not connected: " + message
    assert result["texts"]["estimate_after"] == "Test the connection to see how long this will take."
    assert [entry[0] for entry in layers(result)] == result["stack_before"] and result["original_unchanged"]


def test_the_estimate_follows_runs_and_the_queue(krita_home, cpu_engine, inputs, tmp_path):
    """A fresh server: a first guess before the run, the server's measured speed after it (asked again by itself),
    and the wait for another client's job once one runs ahead."""
    from server_thread import ServerThread

    from stylelayer.api import create_app

    with ServerThread(create_app({}, engine=cpu_engine)) as fresh:
        out = tmp_path / "run"
        result = run_krita(
            krita_home,
            out,
            krita_job(
                "dialog",
                inputs,
                fresh.url,
                # a job well over estimate.MIN_TIMED_S (3 s), so the server learns its speed: 96 px x 80 took
                # 1.8 s on a 2-core AVX512-BF16 CPU and passed only on a loaded machine; this is ~6 s there
                params={"size": 128, "iterations": 130},
                test_connection=True,
                estimate_flow=True,
                dialog_timeout_s=120,
            ),
            timeout=220,
        )
    assert result["ok"], result.get("traceback") or result.get("error_message")
    texts = result["texts"]
    before, after, queued = texts["estimate_before_run"], texts["estimate_after_run"], texts["estimate_with_job_ahead"]
    assert before.startswith("Estimated time: about ") and "a first guess" in before, before
    assert after.startswith("Estimated time: about ") and "a first guess" not in after, after
    assert ", after 1 job ahead of it (about " in queued and queued != after, queued


def test_a_token_kept_in_kritarc_moves_into_a_file_only_the_user_reads(krita_home, token_server, inputs, tmp_path):
    """An older version kept the token in kritarc (readable by every user): the dialog moves it into the plug-in's
    own 0600 file and runs with it against a server that requires it."""
    token_file = krita_home / ".config" / "stylelayer" / "plugin-token"
    token_file.unlink(missing_ok=True)
    kritarc = krita_home / ".config" / "kritarc"
    kritarc.write_text(kritarc.read_text() + f"\n[stylelayer]\ntoken={TOKEN}\n")
    out = tmp_path / "run"
    result = run_krita(krita_home, out, krita_job("dialog", inputs, token_server.url, stored_token=True))
    assert result["ok"], result.get("traceback") or result.get("error_message")
    assert token_file.read_text().strip() == TOKEN and token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.parent.stat().st_mode & 0o777 == 0o700
