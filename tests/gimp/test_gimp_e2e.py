"""End to end in a REAL GIMP 3.0: the plug-in, installed by `stylelayer.install.gimp.install`, is called through
the PDB by GIMP's own Python (python-fu-eval in gimp-console-3.0) against a live stylelayer server on 127.0.0.1.

GIMP 3 runs in a Debian trixie chroot built by tests/hosts/setup_gimp.sh (bookworm's GIMP is 2.10, without
Python). The result is checked from outside: the job exports the image as OpenRaster (.ora: a zip holding
stack.xml and one PNG per layer) and we compare layer order, offsets and pixels with what the server returns for
the same input.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from region_measure import region_misses
from stylelayer_image import feather_mask, mask_is_hard, open_edges
from stylelayer_params import build_params
from testimages import REPO, real_image

from stylelayer.install.gimp import install

pytestmark = pytest.mark.gimp

GIMP_BIN = "usr/bin/gimp-console-3.0"
STYLE_NAME = "Style: starry night"


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _gimp_root() -> Path:
    return Path(os.environ.get("STYLELAYER_GIMP_ROOT") or REPO / ".cache" / "gimp-root")


# ---- GIMP in its chroot ------------------------------------------------------------------------------------
JOB = r"""
import hashlib, json, traceback
from gi.repository import Gegl, Gimp, Gio


def digest(drawable):
    # hash of the pixels at full precision (float), the size and the offsets
    rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    data = drawable.get_buffer().get(rect, 1.0, "RGBA float", Gegl.AbyssPolicy.NONE)
    where = repr((rect.width, rect.height, drawable.get_offsets()[1:])).encode()
    return hashlib.sha256(bytes(data) + where).hexdigest()


A = json.loads(ARGS)
out = {}
images = []
try:
    img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(A["input"]))
    images.append(img)
    if img.get_file() is None and img.get_imported_file() is None:  # a batch load names no file; a saved image has
        img.set_file(Gio.File.new_for_path(A["input"].rsplit(".", 1)[0] + ".xcf"))  # its .xcf
    if A["layer"] is None:  # a single-layer file: GIMP names its layer after the file, we call it "Source"
        layer = img.get_layers()[0]
        layer.set_name("Source")
    else:
        layer = [item for item in img.get_layers() if item.get_name() == A["layer"]][0]
    if A.get("precision"):
        img.convert_precision(getattr(Gimp.Precision, A["precision"]))
    if A.get("gray"):
        img.convert_grayscale()
    if A.get("select"):
        img.select_rectangle(Gimp.ChannelOps.REPLACE, *A["select"])
    if A.get("ellipse"):
        img.select_ellipse(Gimp.ChannelOps.REPLACE, *A["ellipse"])
        sel = img.get_selection()
        rect = Gegl.Rectangle.new(0, 0, img.get_width(), img.get_height())
        out["selection"] = list(bytes(sel.get_buffer().get(rect, 1.0, "Y u8", Gegl.AbyssPolicy.NONE)))
    for name, rect in A.get("channels", []):  # saved selections, named: a region each
        img.select_rectangle(Gimp.ChannelOps.REPLACE, *rect)
        Gimp.Selection.save(img).set_name(name)
    if A.get("channels"):
        Gimp.Selection.none(img)
    if A.get("indexed"):
        img.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 16, False, False, "")
    out["before"] = [item.get_name() for item in img.get_layers()]
    before = {item.get_name(): digest(item) for item in img.get_layers()}
    proc = Gimp.get_pdb().lookup_procedure("plug-in-stylelayer")
    out["found"] = proc is not None
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE if A.get("interactive") else Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [layer])
    for key, value in A["props"].items():
        cfg.set_property(key, Gio.File.new_for_path(value) if key in ("style-file", "loss-plot") else value)
    for _ in range(A.get("runs", 1)):  # Apply again on the same image, with the same values
        res = proc.run(cfg)
        out.setdefault("statuses", []).append(res.index(0).value_nick)
    out["status"] = res.index(0).value_nick
    out["error"] = res.index(1) if res.length() > 1 else None
    out["after"] = [item.get_name() for item in img.get_layers()]
    out["unchanged"] = sorted(
        item.get_name() for item in img.get_layers() if before.get(item.get_name()) == digest(item)
    )
    out["layers"] = {
        item.get_name(): {"has_alpha": item.has_alpha(), "offsets": list(item.get_offsets()[1:]),
                          "size": [item.get_width(), item.get_height()]}
        for item in img.get_layers()
    }
    out["precision"] = img.get_precision().value_nick
    out["selected"] = [item.get_name() for item in img.get_selected_layers()]
    if A.get("indexed"):
        img.convert_rgb()  # the per-layer PNG export below needs RGB
    if A.get("export_precision"):
        img.convert_precision(getattr(Gimp.Precision, A["export_precision"]))
    out["saved"] = Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(A["ora"]), None)
    # GIMP 3.0.4's .ora export writes a layer with offsets (x, y) shifted by (x, y) inside its own PNG (it exports
    # a layer-sized image without resetting the copy's offsets), so pixels are also exported layer by layer.
    out["layer_files"] = {}
    out["mask_files"] = {}
    for i, item in enumerate(img.get_layers()):
        mask = item.get_mask()
        if mask is not None:  # its bytes as they are ("Y u8"); the layer below is exported without it
            rect = Gegl.Rectangle.new(0, 0, mask.get_width(), mask.get_height())
            with open(A["layers_dir"] + "/%d.mask" % i, "wb") as f:
                f.write(bytes(mask.get_buffer().get(rect, 1.0, "Y u8", Gegl.AbyssPolicy.NONE)))
            out["mask_files"][item.get_name()] = A["layers_dir"] + "/%d.mask" % i
        tmp = Gimp.Image.new(item.get_width(), item.get_height(), img.get_base_type())
        copy = Gimp.Layer.new_from_drawable(item, tmp)
        tmp.insert_layer(copy, None, 0)
        if copy.get_mask() is not None:
            copy.remove_mask(Gimp.MaskApplyMode.DISCARD)
        copy.set_offsets(0, 0)
        path = A["layers_dir"] + "/%d.png" % i
        if not Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, tmp, Gio.File.new_for_path(path), None):
            raise RuntimeError("could not export layer %r to %s" % (item.get_name(), path))
        out["layer_files"][item.get_name()] = path
        tmp.delete()
except Exception:
    out["exception"] = traceback.format_exc()
finally:
    for im in images:
        im.delete()
with open(A["result"], "w") as f:
    json.dump(out, f)
"""


class Gimp3:
    """A throwaway GIMP3_DIRECTORY (with our plug-in installed) and a work folder inside the chroot."""

    def __init__(self, root: Path):
        self.root = root
        self.work = Path(tempfile.mkdtemp(prefix="stylelayer-e2e-", dir=root / "tmp"))
        for sub in ("cfg", "home", "tmp"):
            (self.work / sub).mkdir()
        self.installed = install(self.work / "cfg" / "plug-ins")
        self.runs = 0

    def inside(self, path: Path) -> str:
        """The path as GIMP sees it from inside the chroot."""
        return "/" + str(Path(path).resolve().relative_to(self.root.resolve()))

    def last_values(self) -> Path:
        """The plug-in's remembered dialog values (stylelayer_logic.LAST_VALUES_FILE in GIMP's folder)."""
        return self.work / "cfg" / "stylelayer-last-values.json"

    def forget(self) -> None:
        """No values of earlier interactive runs (GIMP's own or the plug-in's) override a test's."""
        shutil.rmtree(self.work / "cfg" / "plug-in-settings", ignore_errors=True)
        self.last_values().unlink(missing_ok=True)

    def run(self, args: dict, timeout: int = 300, env: tuple[str, ...] = ()) -> tuple[dict, Path]:
        self.runs += 1
        run_dir = self.work / f"run{self.runs}"
        run_dir.mkdir()
        ora = run_dir / "out.ora"
        result = run_dir / "result.json"
        (run_dir / "layers").mkdir()
        args = {
            **args,
            "ora": self.inside(ora),
            "result": self.inside(result),
            "layers_dir": self.inside(run_dir / "layers"),
        }
        job = run_dir / "job.py"
        job.write_text(f"ARGS = {json.dumps(json.dumps(args))}\n" + JOB)
        cmd = [
            "timeout",
            "-k",
            "5",
            str(timeout),
            "chroot",
            str(self.root),
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            f"HOME={self.inside(self.work / 'home')}",
            f"TMPDIR={self.inside(self.work / 'tmp')}",
            "LANG=C.UTF-8",
            f"GIMP3_DIRECTORY={self.inside(self.work / 'cfg')}",
            *env,
            "gimp-console-3.0",
            "-i",
            "--batch-interpreter=python-fu-eval",
            "-b",
            f"exec(open({self.inside(job)!r}).read())",
            "--quit",
        ]
        start = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30)
        elapsed = time.monotonic() - start
        log = f"exit {proc.returncode} after {elapsed:.1f} s\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        assert proc.returncode == 0, f"gimp-console-3.0 failed: {log}"
        assert result.is_file(), f"the batch job wrote no result: {log}"
        out = json.loads(result.read_text())
        assert "exception" not in out, f"the batch job raised:\n{out['exception']}\n{log}"
        assert out["found"], f"plug-in-stylelayer is not registered in GIMP: {log}"
        assert out["unchanged"] == sorted(out["before"]), "a layer that was there before has changed"
        out["log"] = log
        out["pixels"] = {
            name: Image.open(self.root / path.lstrip("/")).convert("RGBA") for name, path in out["layer_files"].items()
        }
        out["masks"] = {name: (self.root / path.lstrip("/")).read_bytes() for name, path in out["mask_files"].items()}
        return out, ora

    def close(self):
        if os.environ.get("STYLELAYER_KEEP_GIMP_WORK"):  # for debugging: keep inputs, jobs and .ora files
            print(f"kept GIMP work folder {self.work}")
            return
        shutil.rmtree(self.work, ignore_errors=True)


@pytest.fixture(scope="session")
def gimp3():
    root = _gimp_root()
    problem = None
    if not (root / GIMP_BIN).is_file():
        problem = f"no GIMP 3 chroot at {root} (build it as root: tests/hosts/setup_gimp.sh)"
    elif os.geteuid() != 0:
        problem = "running GIMP 3 in its chroot needs root"
    if problem:
        if _ci():
            pytest.fail(f"CI is set but {problem}")
        pytest.skip(problem)
    gimp = Gimp3(root)
    yield gimp
    gimp.close()


TOKEN = "gimp-e2e-token"


@pytest.fixture(scope="session")
def token_server_url(engine):
    """A server that requires a token, as one on another machine does."""
    from server_thread import ServerThread

    from stylelayer.api import create_app

    with ServerThread(create_app({"token": TOKEN}, engine=engine)) as server:
        yield server.url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- images ------------------------------------------------------------------------------------------------
def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _photo(size=96) -> Image.Image:
    return real_image("tubingen", size)


def _with_alpha(im: Image.Image) -> Image.Image:
    """RGBA with a diagonal alpha ramp from 60 to 255 (no 0: PNG savers may drop colour under alpha 0)."""
    w, h = im.size
    alpha = Image.new("L", (w, h))
    alpha.putdata([60 + (x + y) * 195 // (w + h - 2) for y in range(h) for x in range(w)])
    out = im.convert("RGBA")
    out.putalpha(alpha)
    return out


@pytest.fixture(scope="session")
def style_files(gimp3):
    style = real_image("starry_night", 128)
    png = gimp3.work / "starry_night.png"
    style.save(png)
    jpg = gimp3.work / "starry_night.jpg"
    style.save(jpg, quality=90)
    return {"png": png, "jpg": jpg}


def _write_ora(path: Path, size: tuple[int, int], layers: list[tuple[str, Image.Image, int, int]]):
    """OpenRaster file; `layers` top first: (name, image, x, y)."""
    stack = ET.Element("stack")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "image/openraster", compress_type=zipfile.ZIP_STORED)
        for i, (name, im, x, y) in enumerate(layers):
            src = f"data/{i}.png"
            z.writestr(src, _png(im.convert("RGBA")))
            ET.SubElement(stack, "layer", name=name, src=src, x=str(x), y=str(y))
        root = ET.Element("image", w=str(size[0]), h=str(size[1]))
        root.append(stack)
        z.writestr("stack.xml", ET.tostring(root))


def _read_ora(path: Path) -> list[dict]:
    """Layers top first: name, x, y, image (RGBA; see the note on GIMP 3.0.4's .ora export in JOB)."""
    assert path.is_file(), f"GIMP wrote no {path}"
    with zipfile.ZipFile(path) as z:
        stack = ET.fromstring(z.read("stack.xml"))
        return [
            {
                "name": el.get("name"),
                "x": int(el.get("x", 0)),
                "y": int(el.get("y", 0)),
                "image": Image.open(io.BytesIO(z.read(el.get("src")))).convert("RGBA"),
            }
            for el in stack.iter("layer")
        ]


def _check_ora(ora: Path, out: dict) -> dict:
    """The exported .ora has the same stack (order, offsets) as GIMP reported; layers at (0, 0) the same pixels."""
    layers = _read_ora(ora)
    assert [layer["name"] for layer in layers] == out["after"]
    for layer in layers:
        info = out["layers"][layer["name"]]
        assert [layer["x"], layer["y"]] == info["offsets"], layer["name"]
        assert list(layer["image"].size) == info["size"], layer["name"]
        if info["offsets"] == [0, 0]:
            assert _same_pixels(layer["image"], out["pixels"][layer["name"]]), layer["name"]
    return {layer["name"]: layer for layer in layers}


def _props(style: Path, gimp3: Gimp3, url: str, **extra) -> dict:
    props = {
        "style-file": gimp3.inside(style),
        "iterations": 3,
        "style-strength": 1.0,
        "preserve-colors": False,
        "size": 64,
        "seed": 1234,
        "server-url": url,
    }
    props.update(extra)
    return props


def _expected(client, content: Image.Image, style: Path, props: dict) -> Image.Image:
    """What the server returns for this input: the plug-in must insert exactly these pixels."""
    params = build_params(
        iterations=props["iterations"],
        strength=props["style-strength"],
        preserve_colors=props["preserve-colors"],
        size=props["size"],
        seed=props["seed"],
    )
    result = client.run_job(_png(content), style_png=style.read_bytes(), params=params)
    return Image.open(io.BytesIO(result))


def _same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.convert("RGBA").tobytes() == b.convert("RGBA").tobytes()


# ---- tests -------------------------------------------------------------------------------------------------
def test_new_layer_directly_above_with_the_servers_pixels(gimp3, server_url, client, style_files):
    """RGBA layer at an offset, between two other layers: the result lands right above it, others untouched."""
    photo = _with_alpha(_photo())
    top = Image.new("RGBA", (20, 16), (255, 0, 0, 128))
    background = Image.new("RGBA", (128, 110), (250, 250, 250, 255))
    source = gimp3.work / "stack.ora"
    _write_ora(source, (128, 110), [("Top", top, 3, 4), ("Photo", photo, 17, 23), ("Background", background, 0, 0)])
    props = _props(style_files["png"], gimp3, server_url)

    out, ora = gimp3.run({"input": gimp3.inside(source), "layer": "Photo", "props": props})

    assert out["status"] == "success", out
    assert out["saved"] is True, out
    assert out["before"] == ["Top", "Photo", "Background"]
    assert out["after"] == ["Top", STYLE_NAME, "Photo", "Background"], out
    assert out["selected"] == [STYLE_NAME]
    assert out["layers"][STYLE_NAME] == {"has_alpha": True, "offsets": [17, 23], "size": list(photo.size)}
    assert out["layers"]["Photo"]["offsets"] == [17, 23]
    stack = _check_ora(ora, out)
    assert (stack[STYLE_NAME]["x"], stack[STYLE_NAME]["y"]) == (17, 23)
    pixels = out["pixels"]
    assert _same_pixels(pixels["Photo"], photo), "the source layer changed"
    assert _same_pixels(pixels["Top"], top)
    assert _same_pixels(pixels["Background"], background)
    expected = _expected(client, photo, style_files["png"], props)
    assert expected.mode == "RGBA"
    assert _same_pixels(pixels[STYLE_NAME], expected), "the new layer is not what the server returns for this input"
    assert pixels[STYLE_NAME].getchannel("A").tobytes() == photo.getchannel("A").tobytes(), "alpha not kept"
    assert not _same_pixels(pixels[STYLE_NAME], photo), "the result equals the input: nothing was stylized"


def test_rgb_layer_without_alpha(gimp3, server_url, client, style_files):
    """Also saves the run's loss curves where the `loss-plot` argument says."""
    photo = _photo()
    source = gimp3.work / "flat.png"
    photo.save(source)
    loss_plot = gimp3.work / "losses.png"
    extra = {"style-strength": 3.0, "loss-plot": gimp3.inside(loss_plot)}
    props = _props(style_files["png"], gimp3, server_url, **extra)

    out, ora = gimp3.run({"input": gimp3.inside(source), "layer": None, "props": props})

    assert out["status"] == "success", out
    assert out["saved"] is True
    assert out["after"] == [STYLE_NAME, "Source"], out
    assert out["layers"]["Source"]["has_alpha"] is False
    assert out["layers"][STYLE_NAME] == {"has_alpha": False, "offsets": [0, 0], "size": list(photo.size)}
    _check_ora(ora, out)
    assert _same_pixels(out["pixels"]["Source"], photo), "the source layer changed"
    expected = _expected(client, photo, style_files["png"], props)
    assert expected.mode == "RGB"
    assert _same_pixels(out["pixels"][STYLE_NAME], expected)
    assert not _same_pixels(out["pixels"][STYLE_NAME], photo)
    with Image.open(loss_plot) as plot:  # the server's losses.png of this run, 800x480
        assert (plot.format, plot.size) == ("PNG", (800, 480))


def test_only_the_selection_bounds_are_stylized(gimp3, server_url, client, style_files):
    photo = _with_alpha(_photo())
    background = Image.new("RGBA", (120, 100), (0, 0, 255, 255))
    source = gimp3.work / "select.ora"
    _write_ora(source, (120, 100), [("Photo", photo, 10, 12), ("Background", background, 0, 0)])
    props = _props(style_files["png"], gimp3, server_url)

    # image coordinates (30, 20)-(130, 60), clipped by the layer (10..106, 12..84) to (30..106, 20..60)
    out, ora = gimp3.run({"input": gimp3.inside(source), "layer": "Photo", "select": [30, 20, 100, 40], "props": props})

    assert out["status"] == "success", out
    assert out["after"] == [STYLE_NAME, "Photo", "Background"], out
    assert out["layers"][STYLE_NAME] == {"has_alpha": True, "offsets": [30, 20], "size": [76, 40]}
    _check_ora(ora, out)
    assert _same_pixels(out["pixels"]["Photo"], photo)
    crop = photo.crop((20, 8, 96, 48))
    assert _same_pixels(out["pixels"][STYLE_NAME], _expected(client, crop, style_files["png"], props))
    # a layer mask of the selection's shape: its edges fade in over a few pixels, except on the right, where the
    # layer's own edge cut it
    edges = open_edges((30, 20, 76, 40), (30, 20, 100, 40), (0, 0, 120, 100))
    assert edges == (False, False, True, False)
    assert out["masks"] == {STYLE_NAME: feather_mask(b"\xff" * (76 * 40), 76, 40, open_edges=edges)}
    row = out["masks"][STYLE_NAME][20 * 76 : 21 * 76]
    assert row[0] < row[3] < row[10] == 255 == row[-1]


def test_16_bit_image_and_a_jpeg_style(gimp3, server_url, style_files):
    """Higher precision: the new layer follows the image's precision; a non-PNG style goes through GIMP's loader."""
    photo = _photo()
    source = gimp3.work / "deep.png"
    photo.save(source)
    props = _props(style_files["jpg"], gimp3, server_url)

    out, ora = gimp3.run(
        {
            "input": gimp3.inside(source),
            "layer": None,
            "precision": "U16_NON_LINEAR",
            "export_precision": "U8_NON_LINEAR",
            "props": props,
        }
    )

    assert out["status"] == "success", out
    assert out["precision"] == "u16-non-linear"
    assert out["after"] == [STYLE_NAME, "Source"], out
    _check_ora(ora, out)
    assert _same_pixels(out["pixels"]["Source"], photo)
    assert out["pixels"][STYLE_NAME].size == photo.size
    assert not _same_pixels(out["pixels"][STYLE_NAME], photo)


def test_grayscale_image(gimp3, server_url, style_files):
    """A grey image gets a grey result layer (GIMP converts the RGB result into the layer's format)."""
    photo = _photo()
    source = gimp3.work / "grey.png"
    photo.save(source)
    props = _props(style_files["png"], gimp3, server_url)

    out, ora = gimp3.run({"input": gimp3.inside(source), "layer": None, "gray": True, "props": props})

    assert out["status"] == "success", out
    assert out["after"] == [STYLE_NAME, "Source"], out
    assert out["layers"][STYLE_NAME] == {"has_alpha": False, "offsets": [0, 0], "size": list(photo.size)}
    _check_ora(ora, out)
    result = out["pixels"][STYLE_NAME]
    r, g, b, _ = result.split()
    assert r.tobytes() == g.tobytes() == b.tobytes(), "the new layer is not grey"
    assert not _same_pixels(result, out["pixels"]["Source"])


def test_server_down_is_an_execution_error_and_leaves_the_image_alone(gimp3, style_files):
    photo = _with_alpha(_photo())
    source = gimp3.work / "down.ora"
    _write_ora(source, photo.size, [("Photo", photo, 0, 0)])
    url = f"http://127.0.0.1:{_free_port()}"
    props = _props(style_files["png"], gimp3, url)

    out, ora = gimp3.run({"input": gimp3.inside(source), "layer": "Photo", "props": props})

    assert out["status"] == "execution-error", out
    assert out["error"] == (  # GIMP's error box is titled "Neural Style Transfer" already: said once
        f"Cannot reach the stylelayer server at {url}. Start it with "
        "'stylelayer serve' on that machine, or correct the server address."
    ), out
    assert out["after"] == out["before"] == ["Photo"]
    assert out["saved"] is True
    _check_ora(ora, out)
    assert _same_pixels(out["pixels"]["Photo"], photo)


def test_a_style_file_gimp_cannot_open_is_a_clear_execution_error(gimp3, server_url):
    photo = _photo()
    source = gimp3.work / "bad.png"
    photo.save(source)
    not_an_image = gimp3.work / "notes.txt"
    not_an_image.write_text("this is not an image\n")
    props = _props(not_an_image, gimp3, server_url)

    out, ora = gimp3.run({"input": gimp3.inside(source), "layer": None, "props": props})

    assert out["status"] == "execution-error", out
    assert "could not open the style image" in out["error"], out
    assert out["after"] == ["Source"]
    _check_ora(ora, out)
    assert _same_pixels(out["pixels"]["Source"], photo)


def test_a_style_file_that_does_not_exist_is_named(gimp3, server_url):
    """A PDB call naming a style file that is not there: the plug-in says so (GIMP's own check of an OPEN file
    argument said "'<not transformable to string>' ... out of range"), and nothing changes."""
    photo = _photo()
    source = gimp3.work / "missing.png"
    photo.save(source)
    missing = gimp3.work / "no-such-style.png"
    props = _props(missing, gimp3, server_url)

    out, _ = gimp3.run({"input": gimp3.inside(source), "layer": None, "props": props})

    assert out["status"] == "execution-error", out
    assert out["error"] == (  # the same words as Krita's (tests/krita/test_krita_e2e.py)
        f"The style image {gimp3.inside(missing)} does not exist: choose another file."
    )
    assert out["after"] == ["Source"]


# ---- the interactive path, under Xvfb ----------------------------------------------------------------------
@pytest.fixture()
def xdisplay():
    """An Xvfb display reachable from the chroot over TCP (the chroot shares the network, not /tmp)."""
    missing = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the dialog test needs {' and '.join(missing)} (apt-get install xvfb xdotool)")
    number = next(n for n in range(91, 140) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    xvfb = subprocess.Popen(
        ["Xvfb", f":{number}", "-ac", "-listen", "tcp", "-screen", "0", "1280x1024x24"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while (
            subprocess.run(
                ["xdotool", "getmouselocation"], env={**os.environ, "DISPLAY": f":{number}"}, capture_output=True
            ).returncode
            != 0
        ):
            assert time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.2)
        yield number
    finally:
        xvfb.terminate()
        xvfb.wait(10)


def _windows(display: int, title: str) -> list[tuple[int, int, int, int]]:
    """(x, y, width, height) of the visible windows called `title`."""
    env = {**os.environ, "DISPLAY": f":{display}"}
    ids = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", f"^{title}$"], env=env, capture_output=True, text=True
    ).stdout.split()
    found = []
    for wid in ids:
        geo = subprocess.run(["xdotool", "getwindowgeometry", "--shell", wid], env=env, capture_output=True, text=True)
        values = dict(line.split("=", 1) for line in geo.stdout.split() if "=" in line)
        if {"X", "Y", "WIDTH", "HEIGHT"} <= set(values):
            found.append(tuple(int(values[k]) for k in ("X", "Y", "WIDTH", "HEIGHT")))
    return found


def _wait_window(display: int, title: str, pick, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for geometry in _windows(display, title):
            if pick(geometry):
                return geometry
        time.sleep(0.2)
    raise AssertionError(f"no {title!r} window appeared within {timeout:.0f} s")


def _settled_window(display: int, title: str, pick, settle: float = 1.0, timeout: float = 60.0):
    """The window's geometry once it has not changed for `settle` s: the dialog grows when its status or
    estimate line gets longer, and a click placed from an older geometry misses its button."""
    geometry = _wait_window(display, title, pick, timeout)
    since, deadline = time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - since < settle:
        assert time.monotonic() < deadline, f"the {title!r} window kept changing its size"
        time.sleep(0.2)
        now = _wait_window(display, title, pick, timeout)
        if now != geometry:
            geometry, since = now, time.monotonic()
    return geometry


def _press_ok(display: int, title: str):
    """Clicks the dialog's OK (its bottom-right button) and waits for the dialog to close."""
    x, y, w, h = _settled_window(display, title, lambda g: g[3] > 200)
    _click(display, x + w - 39, y + h - 19)
    deadline = time.monotonic() + 30
    while any(g[3] > 200 for g in _windows(display, title)):
        assert time.monotonic() < deadline, f"OK at the bottom right of {(x, y, w, h)} did not close the dialog"
        time.sleep(0.2)


def _click(display: int, x: int, y: int):
    env = {**os.environ, "DISPLAY": f":{display}"}
    subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "1"], env=env, check=True)


def test_dialog_then_cancel_while_the_server_works(gimp3, server_url, style_files, xdisplay):
    """INTERACTIVE run: GimpUi's generated dialog (OK), then our progress window's Cancel stops the job."""
    import concurrent.futures

    photo = _photo()
    source = gimp3.work / "dialog.png"
    photo.save(source)
    gimp3.forget()  # no "last values" override ours...
    props = _props(style_files["png"], gimp3, server_url, iterations=5000)
    gimp3.last_values().write_text(json.dumps({**props, "preset": "custom"}))  # ...but a run before: no first-run
    args = {"input": gimp3.inside(source), "layer": None, "interactive": True, "props": props}  # preset

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(gimp3.run, args, 180, (f"DISPLAY=127.0.0.1:{xdisplay}",))
        _press_ok(xdisplay, "Neural Style Transfer")
        x, y, w, h = _wait_window(xdisplay, "Neural Style Transfer", lambda g: g[3] < 200)
        time.sleep(1.5)  # let the job start on the server
        assert not running.done(), "the job ended before Cancel could be pressed"
        _click(xdisplay, x + w // 2, y + h - 22)  # Cancel: the progress window's button
        started = time.monotonic()
        out, _ = running.result(timeout=120)

    assert time.monotonic() - started < 30
    assert out["status"] == "cancel", out
    assert out["after"] == out["before"] == ["Source"]


def test_ellipse_selection_becomes_a_layer_mask(gimp3, token_server_url, client_mod, style_files):
    """An elliptical selection: the result layer gets a layer mask of the ellipse (its hard edge faded in), so only
    the ellipse shows the result, in one undo group; the server needs a token, given as the token argument."""
    photo = _photo()
    source = gimp3.work / "ellipse.png"
    photo.save(source)
    props = _props(style_files["png"], gimp3, token_server_url, **{"server-token": TOKEN})

    out, ora = gimp3.run({"input": gimp3.inside(source), "layer": None, "ellipse": [10, 8, 60, 44], "props": props})

    assert out["status"] == "success", out
    assert out["after"] == [STYLE_NAME, "Source"], out
    # the selection's bounding box, at its offsets, with alpha: transparent outside the selection
    assert out["layers"][STYLE_NAME] == {"has_alpha": True, "offsets": [10, 8], "size": [60, 44]}
    width, height = photo.size
    selection = bytes(out["selection"])
    crop = b"".join(selection[(8 + j) * width + 10 : (8 + j) * width + 70] for j in range(44))
    assert not mask_is_hard(crop)  # GIMP antialiases the ellipse: its own soft edge is used as it is
    assert out["masks"] == {STYLE_NAME: feather_mask(crop, 60, 44)} == {STYLE_NAME: crop}
    outside = sum(1 for m in selection if m == 0)
    assert outside > width * height // 2  # the ellipse is less than half the picture...
    assert sum(1 for m in out["masks"][STYLE_NAME] if m) == sum(1 for m in selection if m)  # ...and only it shows
    token_client = client_mod.StylelayerClient(token_server_url, token=TOKEN, timeout=60)
    expected = _expected(token_client, photo.crop((10, 8, 70, 52)), style_files["png"], props)
    # the layer exported with its mask removed (as with the mask disabled): the server's pixels inside the
    # ellipse, alpha 0 outside it
    layer = out["pixels"][STYLE_NAME]
    alpha = layer.getchannel("A").tobytes()
    assert alpha == bytes(255 if m else 0 for m in crop)
    want = expected.convert("RGB").convert("RGBA").tobytes()
    got = layer.tobytes()
    assert all(got[4 * i : 4 * i + 3] == want[4 * i : 4 * i + 3] for i, m in enumerate(crop) if m)
    assert _same_pixels(out["pixels"]["Source"], photo)  # the original untouched


def test_a_wrong_token_and_another_server_are_told_apart(gimp3, token_server_url, style_files):
    photo = _photo()
    source = gimp3.work / "token.png"
    photo.save(source)
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):  # another web server on the port
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        runs = {
            "wrong token": _props(style_files["png"], gimp3, token_server_url, **{"server-token": "guess"}),
            "no token": _props(style_files["png"], gimp3, token_server_url),
            "not stylelayer": _props(style_files["png"], gimp3, f"http://127.0.0.1:{httpd.server_port}"),
            "url with /v1": _props(style_files["png"], gimp3, token_server_url + "/v1/", **{"server-token": TOKEN}),
        }
        outs = {
            what: gimp3.run({"input": gimp3.inside(source), "layer": None, "props": props})[0]
            for what, props in runs.items()
        }
    finally:
        httpd.shutdown()
    title = ""  # GIMP titles its error box with the procedure's name: not repeated in the message
    assert outs["wrong token"]["error"] == title + (
        f"The server at {token_server_url} did not accept the token. Paste the token the server was started with "
        "(STYLELAYER_TOKEN or its --token-file) into the Token field."
    )
    assert outs["no token"]["error"] == title + (
        f"The server at {token_server_url} requires a token. Paste the token the server was started with "
        "(STYLELAYER_TOKEN or its --token-file) into the Token field."
    )
    assert outs["not stylelayer"]["error"] == title + (
        f"http://127.0.0.1:{httpd.server_port} answers, but it is not a stylelayer server. Check the address and "
        "port: the server prints its URL when it starts (usually http://127.0.0.1:8765), with nothing after the port."
    )
    assert outs["url with /v1"]["status"] == "success", outs["url with /v1"]  # the API's own prefix is dropped
    for what in ("wrong token", "no token", "not stylelayer"):
        assert outs[what]["status"] == "execution-error" and outs[what]["after"] == ["Source"]


def test_indexed_image_is_explained(gimp3, server_url, style_files):
    """The menu entry is no longer greyed out on an indexed image: running it says why, and what to do."""
    photo = _photo()
    source = gimp3.work / "indexed.png"
    photo.save(source)
    props = _props(style_files["png"], gimp3, server_url)

    out, _ = gimp3.run({"input": gimp3.inside(source), "layer": None, "indexed": True, "props": props})

    assert out["status"] == "execution-error", out
    assert out["error"] == (
        "This image is indexed (a palette of colours), and style transfer "
        "paints new colours: convert it with Image > Mode > RGB first."
    )
    assert out["after"] == ["Source"]


def test_full_resolution_preset_gives_a_layer_of_the_canvas_size(gimp3, server_url, style_files):
    """Size 0 (what the "full" preset sets) on a 640x480 canvas with 4 iterations: two levels (4 at 320x240, 2 at
    640x480), progress naming the second, a result of the canvas's own size."""
    canvas = real_image("tubingen").resize((640, 480), Image.Resampling.LANCZOS)
    source = gimp3.work / "canvas640.png"
    canvas.save(source)
    log = gimp3.work / "full.log"
    props = _props(style_files["png"], gimp3, server_url, preset="custom", size=0, iterations=4)

    out, _ = gimp3.run(
        {"input": gimp3.inside(source), "layer": None, "props": props},
        timeout=400,
        env=(f"STYLELAYER_GIMP_LOG={gimp3.inside(log)}",),
    )

    assert out["status"] == "success", out
    assert out["layers"][STYLE_NAME] == {"has_alpha": False, "offsets": [0, 0], "size": [640, 480]}
    progress = [line for line in log.read_text().splitlines() if line.startswith("progress: ")]
    assert any("level 2/2" in line for line in progress), progress
    counts = [line for line in progress if "iteration " in line]
    assert counts and all("/6," in line for line in counts), progress  # over the whole job (4 + 2) from the start


def test_a_killed_plugin_leaves_no_job_running(gimp3, engine, style_files):
    """GIMP's progress-bar Cancel kills the plug-in (SIGKILL): its job stops on the server once it goes unpolled
    for abandon_after seconds ($STYLELAYER_ABANDON_AFTER, 5 here; 60 by default)."""

    from server_thread import ServerThread

    from stylelayer.api import create_app

    with ServerThread(create_app({}, engine=engine)) as server:
        _kill_the_plugin_mid_job(gimp3, server, style_files)


def _kill_the_plugin_mid_job(gimp3, server, style_files):
    import concurrent.futures
    import signal

    queue = server.app.extensions["stylelayer"].queue
    server_url = server.url
    photo = _photo()
    source = gimp3.work / "killed.png"
    photo.save(source)
    props = _props(style_files["png"], gimp3, server_url, iterations=5000)
    args = {"input": gimp3.inside(source), "layer": None, "props": props}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(gimp3.run, args, 180, ("STYLELAYER_ABANDON_AFTER=5",))
        deadline = time.monotonic() + 60
        job = None
        while job is None and time.monotonic() < deadline:  # the plug-in's job, running on this test's server
            running_jobs = [j for j in queue.jobs_snapshot() if j.state == "running"]
            job = running_jobs[0] if running_jobs else None
            time.sleep(0.2)
        assert job is not None and job.abandon_after == 5
        run_of_plugin = (
            "plug-ins/stylelayer_gimp/stylelayer_gimp.py -gimp .* -run"  # its run, not its query at GIMP's start
        )
        found = subprocess.run(["pgrep", "-f", run_of_plugin], capture_output=True, text=True)
        assert len(found.stdout.split()) == 1, found
        pid = int(found.stdout.split()[0])
        os.kill(pid, signal.SIGKILL)  # what GIMP does to a plug-in whose progress is cancelled
        killed = time.monotonic()
        out, _ = running.result(timeout=120)
    assert out["status"] != "success"
    while job.state == "running":
        assert time.monotonic() - killed < 30, "the job kept running after its plug-in was killed"
        time.sleep(0.5)
    assert job.state == "cancelled" and job.error["code"] == "abandoned"


def test_dialog_tests_the_token_server_and_shows_the_estimate(gimp3, token_server_url, style_files, xdisplay):
    """INTERACTIVE: the dialog names the layer, tests the server (token accepted) and shows the estimate before
    OK; after OK the layer is added and the values (token included, readable by the user only) are remembered.
    $STYLELAYER_SCREENSHOT_DIR: where to save the screen with the dialog (docs/screenshots)."""
    import concurrent.futures

    photo = _photo()
    source = gimp3.work / "estimate.png"
    photo.save(source)
    gimp3.forget()
    log = gimp3.work / "dialog.log"
    log.unlink(missing_ok=True)
    props = _props(style_files["png"], gimp3, token_server_url, **{"server-token": TOKEN})
    gimp3.last_values().write_text(json.dumps({**props, "preset": "custom"}))  # a run before: no first-run preset
    args = {"input": gimp3.inside(source), "layer": None, "interactive": True, "props": props}
    env = (f"DISPLAY=127.0.0.1:{xdisplay}", f"STYLELAYER_GIMP_LOG={gimp3.inside(log)}")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(gimp3.run, args, 240, env)
        opened = _settled_window(xdisplay, "Neural Style Transfer", lambda g: g[3] > 200, settle=0.5)
        deadline = time.monotonic() + 60
        while "estimate: Estimated time" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
            time.sleep(0.2)
        settled = _settled_window(xdisplay, "Neural Style Transfer", lambda g: g[3] > 200)
        shots = os.environ.get("STYLELAYER_SCREENSHOT_DIR")
        if shots:
            x, y, w, h = settled
            subprocess.run(
                [
                    "import",
                    "-display",
                    f":{xdisplay}",
                    "-window",
                    "root",
                    "-crop",
                    f"{w}x{h}+{x}+{y}",  # the window itself (Xvfb has no window manager, so no title bar)
                    str(Path(shots) / "gimp-dialog.png"),
                ],
                check=True,
            )
        _press_ok(xdisplay, "Neural Style Transfer")
        out, _ = running.result(timeout=200)
    lines = log.read_text().splitlines()
    version = __import__("stylelayer").__version__
    assert "target: Paints layer “Source” of “estimate.xcf”: 96×72 px." in lines
    assert f"status: Connected to stylelayer {version} at {token_server_url} (CPU, token accepted)." in lines
    assert any(line.startswith("estimate: Estimated time: about ") for line in lines), lines
    assert out["status"] == "success", out
    assert out["after"] == [STYLE_NAME, "Source"]
    # the status and estimate lines keep their place: the buttons did not move while they changed
    assert settled[3] == opened[3], (opened, settled)
    # no two fields share a mnemonic (the seed and loss-plot fields are for scripts: not in the dialog)
    assert "duplicate mnemonic" not in out["log"], [line for line in out["log"].splitlines() if "mnemonic" in line]
    remembered = json.loads(gimp3.last_values().read_text())
    assert remembered["iterations"] == props["iterations"]
    # the token of an older version's values moved into the plug-ins' own file, readable by the user only, and is
    # neither in the values file nor in GIMP's settings
    assert "server-token" not in remembered and TOKEN not in gimp3.last_values().read_text()
    token_file = gimp3.work / "home" / ".config" / "stylelayer" / "plugin-token"
    assert token_file.read_text().strip() == TOKEN and token_file.stat().st_mode & 0o777 == 0o600
    settings = [p for p in (gimp3.work / "cfg").rglob("*") if p.is_file() and p.suffix not in (".py", ".png")]
    assert settings and not [p for p in settings if TOKEN.encode() in p.read_bytes()]


def test_a_second_run_is_a_new_variation_on_top(gimp3, server_url, style_files):
    """Run twice on the same layer with the seed argument 0 (a new variation each run, as the dialog does unless
    the painter keeps the last one): two different results, the newer above the older, both above the source."""
    photo = _photo()
    source = gimp3.work / "twice.png"
    photo.save(source)
    log = gimp3.work / "twice.log"
    props = _props(style_files["png"], gimp3, server_url, seed=0)

    out, _ = gimp3.run(
        {"input": gimp3.inside(source), "layer": None, "runs": 2, "props": props},
        env=(f"STYLELAYER_GIMP_LOG={gimp3.inside(log)}",),
    )

    assert out["statuses"] == ["success", "success"], out
    assert out["after"] == [STYLE_NAME + " #2", STYLE_NAME, "Source"], out  # top first
    seeds = [line for line in log.read_text().splitlines() if line.startswith("seed: ")]
    assert len(seeds) == 2 and seeds[0] != seeds[1], seeds
    assert not _same_pixels(out["pixels"][STYLE_NAME], out["pixels"][STYLE_NAME + " #2"])
    assert _same_pixels(out["pixels"]["Source"], photo)


def test_a_server_killed_mid_job_is_an_interrupted_run(gimp3, style_files, tmp_path):
    """`kill -9` of the server while the plug-in's job runs: the error says the run was interrupted and what to
    do, not "cannot reach … start it"; the image is unchanged."""
    import concurrent.futures

    from serve_process import kill_when_running, start_serve

    photo = _photo()
    source = gimp3.work / "killed-server.png"
    photo.save(source)
    proc, url = start_serve(tmp_path)
    try:
        props = _props(style_files["png"], gimp3, url, iterations=5000)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(gimp3.run, {"input": gimp3.inside(source), "layer": None, "props": props}, 240)
            killed = kill_when_running(proc, url)
            out, _ = running.result(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed["state"] == "running"
    assert out["status"] == "execution-error", out
    assert out["error"] == (
        f"The run was interrupted: the stylelayer server at {url} stopped while it worked on the layer. The image is "
        "unchanged. Start the server again ('stylelayer serve'), then press Apply again."
    )
    assert out["after"] == ["Source"]


def test_the_dialog_says_at_once_what_is_wrong(gimp3, style_files, xdisplay):
    """INTERACTIVE on an indexed image with no server: the dialog says why it cannot paint as it opens (OK stays
    off), and "Not connected yet" instead of a failure before any input."""
    import concurrent.futures

    photo = _photo()
    source = gimp3.work / "indexed-dialog.png"
    photo.save(source)
    gimp3.forget()
    log = gimp3.work / "indexed-dialog.log"
    log.unlink(missing_ok=True)
    props = _props(style_files["png"], gimp3, f"http://127.0.0.1:{_free_port()}")
    args = {"input": gimp3.inside(source), "layer": None, "indexed": True, "interactive": True, "props": props}
    env = (f"DISPLAY=127.0.0.1:{xdisplay}", f"STYLELAYER_GIMP_LOG={gimp3.inside(log)}")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(gimp3.run, args, 120, env)
        x, y, w, h = _settled_window(xdisplay, "Neural Style Transfer", lambda g: g[3] > 200)
        deadline = time.monotonic() + 30
        while "status: Not connected" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
            time.sleep(0.2)
        _click(xdisplay, x + w - 39, y + h - 19)  # OK: insensitive, the dialog stays
        time.sleep(1.5)
        assert any(g[3] > 200 for g in _windows(xdisplay, "Neural Style Transfer"))
        env_x = {**os.environ, "DISPLAY": f":{xdisplay}"}
        subprocess.run(["xdotool", "mousemove", str(x + w // 2), str(y + 10)], env=env_x, check=True)
        subprocess.run(["xdotool", "key", "Escape"], env=env_x, check=True)
        out, _ = running.result(timeout=100)
    lines = log.read_text().splitlines()
    assert (
        "target: Cannot paint this image: This image is indexed (a palette of colours), and style transfer paints "
        "new colours: convert it with Image > Mode > RGB first." in lines
    ), lines
    assert "status: Not connected yet: press Test connection, or Apply." in lines, lines
    assert not [line for line in lines if line.startswith("status: Not connected: ")], lines
    assert out["status"] == "cancel" and out["after"] == ["Source"], out


@pytest.mark.slow
def test_two_channels_two_styles_one_layer(gimp3, server_url, engine, style_files):
    """A style per saved selection: channels Sky and Ground over the photo's halves (the photo at an offset in a
    larger canvas), The Starry Night and The Scream through the `regions` argument. One layer comes back above the
    photo, nothing else changes, and in each half the returned layer's guided Gram matrices are nearer its own
    style's than the other's (tests/region_measure.py, the engine test's measure)."""
    photo = _photo()
    w, h = photo.size
    background = Image.new("RGBA", (w + 14, h + 12), (250, 250, 250, 255))
    source = gimp3.work / "regions.ora"
    _write_ora(source, background.size, [("Photo", photo, 10, 6), ("Background", background, 0, 0)])
    scream = real_image("the_scream", 128)
    scream_file = gimp3.work / "the_scream.png"
    scream.save(scream_file)
    top, bottom = [10, 6, w, h // 2], [10, 6 + h // 2, w, h - h // 2]
    spec = f"Sky={gimp3.inside(style_files['png'])}; Ground={gimp3.inside(scream_file)}"
    props = _props(style_files["png"], gimp3, server_url, iterations=40, size=max(w, h), regions=spec)
    args = {
        "input": gimp3.inside(source),
        "layer": "Photo",
        "props": props,
        "channels": [["Sky", top], ["Ground", bottom]],
    }

    out, _ora = gimp3.run(args)

    name = "Style: starry night + the scream"
    assert out["status"] == "success", out
    assert out["after"] == [name, "Photo", "Background"], out
    assert out["layers"][name] == {"has_alpha": True, "offsets": [10, 6], "size": [w, h]}
    layer = out["pixels"][name]
    assert layer.getchannel("A").getextrema() == (255, 255)  # the whole layer: no selection cut it
    masks = []
    for rect in (top, bottom):
        mask = Image.new("L", (w, h), 0)
        mask.paste(255, (rect[0] - 10, rect[1] - 6, rect[0] - 10 + rect[2], rect[1] - 6 + rect[3]))
        masks.append(mask)
    starry = real_image("starry_night", 128)
    pairs = [(masks[0], starry, scream), (masks[1], scream, starry)]
    assert region_misses(engine, layer.convert("RGB"), pairs) == []
    assert region_misses(engine, photo, pairs)  # the photo alone fails the measure


def test_a_region_channel_the_image_lacks_is_named(gimp3, server_url, style_files):
    """A `regions` argument naming no channel of the image: an execution error that says which channels it has."""
    source = gimp3.work / "regions-missing.png"
    _photo(48).save(source)
    props = _props(style_files["png"], gimp3, server_url, regions=f"Sky={gimp3.inside(style_files['png'])}")
    out, _ora = gimp3.run(
        {"input": gimp3.inside(source), "layer": None, "props": props, "channels": [["Ground", [0, 0, 8, 8]]]}
    )
    assert out["status"] == "execution-error", out
    assert "The image has no channel “Sky” (its channels: “Ground”)" in out["error"], out["error"]
    assert out["after"] == ["Source"]


def test_the_dialog_offers_a_style_per_saved_selection(gimp3, server_url, style_files, xdisplay):
    """INTERACTIVE: an image with channels Sky and Ground shows a style file chooser for each, starting from the
    regions argument (Sky's file; Ground empty: not a region); OK paints one layer with Sky as its only region."""
    import concurrent.futures

    source = gimp3.work / "dialog-regions.png"
    _photo().save(source)
    gimp3.forget()
    log = gimp3.work / "dialog-regions.log"
    log.unlink(missing_ok=True)
    starry = gimp3.inside(style_files["png"])
    props = _props(style_files["png"], gimp3, server_url, regions=f"Sky={starry}")
    gimp3.last_values().write_text(json.dumps({**props, "preset": "custom"}))
    args = {
        "input": gimp3.inside(source),
        "layer": None,
        "interactive": True,
        "props": props,
        "channels": [["Sky", [0, 0, 96, 36]], ["Ground", [0, 36, 96, 36]]],
    }
    env = (f"DISPLAY=127.0.0.1:{xdisplay}", f"STYLELAYER_GIMP_LOG={gimp3.inside(log)}")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(gimp3.run, args, 240, env)
        _press_ok(xdisplay, "Neural Style Transfer")
        out, _ = running.result(timeout=200)
    # the choosers in the Channels dialog's order (the last saved on top)
    assert f"channels: Ground=; Sky={starry}" in log.read_text().splitlines(), log.read_text()
    assert out["status"] == "success", out
    assert out["after"] == ["Style: starry night", "Source"], out
