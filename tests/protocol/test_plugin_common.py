"""The modules both plug-ins share live once, in plugins/common: no plug-in folder holds a copy, they stay importable
by the older Pythons that Krita and GIMP embed, their limits equal the server's, their error messages cover the
client's errors, and the installers refuse to assemble a plug-in without them."""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
from pathlib import Path

import pytest
from protocol_helpers import REPO, stylelayer_client
from sourcecheck import foreign_imports
from stylelayer_image import clear_outside, insert_above, open_edges
from stylelayer_messages import CANCELLED_MESSAGE, NOT_CONNECTED_YET, PluginError, error_message, sentence
from stylelayer_params import (
    BASE_STYLE_WEIGHT,
    DEFAULT_SERVER_URL,
    MAX_ITERATIONS,
    MAX_PIXELS,
    MAX_SEED,
    MAX_SIZE,
    MAX_STYLE_SIDE,
    PRESET_LABELS,
    PRESETS,
    build_params,
    check_server_url,
    check_style_file,
    default_preset,
    matching_preset,
    new_seed,
    strength_from_slider,
    strength_to_slider,
)
from stylelayer_settings import load_token, migrate_token, save_token, token_path
from stylelayer_status import estimate_text, format_duration, progress_fraction, progress_text

from stylelayer import limits
from stylelayer.core.params import StyleParams
from stylelayer.install import HOSTS, SHARED_MODULES, plugins_root

COMMON = REPO / "plugins" / "common"
SHARED = [COMMON / name for name in SHARED_MODULES]


def test_the_shared_modules_have_one_source() -> None:
    assert sorted(p.name for p in COMMON.glob("*.py")) == sorted(SHARED_MODULES)
    assert plugins_root() == REPO / "plugins"  # the tests assemble from this checkout
    for host in HOSTS:
        copies = [p for p in (REPO / "plugins" / host).rglob("*") if p.name in SHARED_MODULES]
        assert copies == [], f"{copies} duplicate plugins/common: the installer copies them in"


@pytest.mark.parametrize("src", SHARED, ids=lambda p: p.name)
def test_shared_modules_use_only_the_standard_library_and_python38_syntax(src) -> None:
    ast.parse(src.read_text(), feature_version=(3, 8))  # SyntaxError for newer syntax
    assert foreign_imports([src], allowed={path.stem for path in SHARED}) == []  # each other, by name


def _python38() -> str | None:
    """A working Python 3.8 (the oldest that Krita/GIMP builds still embed), if this machine has one."""
    candidates = [shutil.which("python3.8"), *map(str, Path.home().glob(".pyenv/versions/3.8*/bin/python3.8"))]
    for exe in filter(None, candidates):
        if subprocess.run([exe, "-c", "pass"], capture_output=True).returncode == 0:
            return exe
    return None


# Under Python 3.8, each shared module imports from plugins/common and does its job on a small example.
PYTHON38_CHECKS = {
    "stylelayer_client": (
        "body, ctype = m._job_form(b'png', [b'a', b'b'], 'ab', {'size': 8}, 5); "
        "assert ctype.startswith('multipart/form-data; boundary=') and body.count(b'name=\"style\"') == 2"
    ),
    "stylelayer_image": (
        "assert m.png_size(m.encode_png(3, 2, bytes(18), channels=3)) == (3, 2); "
        "assert m.style_layer_name(m.style_label('/a/b_c.png'), {'Style: b c'}) == 'Style: b c #2'"
    ),
    "stylelayer_params": (
        "assert m.build_params(5, 2.0)['style_weight'] == 2 * m.BASE_STYLE_WEIGHT; "
        "assert m.check_server_url('http://h:1/') == 'http://h:1'"
    ),
    "stylelayer_regions": (
        "r = m.Region('Sky', bytes([0, 255]), m.RegionStyle(path='/a/b.png')); "
        "assert m.region_form([r], 2, 1, lambda p: b'png')[0][1:] == (b'png', None) and m.regions_label([r]) == 'b'"
    ),
    "stylelayer_status": (
        "s = {'state': 'running', 'iteration': 1, 'total': 4, 'eta_s': 2}; "
        "assert m.progress_fraction(s) == 0.25 and m.progress_text(s, 'T') == 'T: iteration 1/4, about 2 s left'"
    ),
    "stylelayer_messages": "assert m.error_message(KeyError('x')) == \"Unexpected error (KeyError): 'x'\"",
    "stylelayer_settings": "assert m.abandon_after_s({m.ABANDON_AFTER_ENV: '7'}) == 7",
    "stylelayer_workflow": (
        "assert m.placement('a', ['Photo', 'Style: a'], 0) == ('Style: a #2', 1); "
        "assert m.resolve_token('', {m.TOKEN_ENV: 'e'}, '/nonexistent') == 'e'"
    ),
}


@pytest.mark.parametrize("module", PYTHON38_CHECKS)
def test_shared_module_imports_and_works_under_python38(module) -> None:
    exe = _python38()
    if exe is None:
        pytest.skip("no working python3.8 on this machine")
    code = f"import sys; sys.path.insert(0, {str(COMMON)!r}); import {module} as m; {PYTHON38_CHECKS[module]}"
    done = subprocess.run([exe, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_plugin_copies_of_the_limits_equal_the_servers() -> None:
    """The plug-ins cannot import stylelayer.limits; when a limit changes there, change their copies too."""
    assert DEFAULT_SERVER_URL == stylelayer_client.DEFAULT_URL == limits.DEFAULT_URL
    assert MAX_SIZE == limits.MAX_SIZE
    assert MAX_PIXELS == limits.MAX_PIXELS
    assert MAX_ITERATIONS == limits.MAX_ITERATIONS
    assert MAX_STYLE_SIDE == limits.MAX_STYLE_SIDE
    assert StyleParams().style_weight == BASE_STYLE_WEIGHT


URL = "http://h:1"
C = stylelayer_client


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (PluginError("Select a layer first."), "Select a layer first."),
        (
            C.ServerUnavailable("cannot reach … (refused)", url=URL),
            "Cannot reach the stylelayer server at http://h:1. Start it with 'stylelayer serve' on that machine, or "
            "correct "
            "the server address.",
        ),
        (
            C.TimedOut("did not answer within 30 s", url=URL),
            "The stylelayer server at http://h:1 did not answer in time. It may be busy with a large job: try again "
            "in a "
            "moment, or look at the server's window for errors.",
        ),
        (
            C.ConnectionLost("broke (reset)", url=URL),
            "The connection to http://h:1 broke off. If the stylelayer server stopped, start it again; if the address "
            "belongs to another program, correct it.",
        ),
        (
            C.NotStylelayer("answered HTTP 501 Unsupported method", url=URL),
            "http://h:1 answers, but it is not a stylelayer server. Check the address and port: the server prints its "
            "URL "
            "when it starts (usually http://127.0.0.1:8765), with nothing after the port.",
        ),
        (
            C.WrongToken("the server at http://h:1 requires a token and none was sent", url=URL),
            "The server at http://h:1 requires a token. Paste the token the server was started with (STYLELAYER_TOKEN "
            "or "
            "its --token-file) into the Token field.",
        ),
        (
            C.WrongToken("the server at http://h:1 refused the token it was sent", url=URL),
            "The server at http://h:1 did not accept the token. Paste the token the server was started with "
            "(STYLELAYER_TOKEN or its --token-file) into the Token field.",
        ),
        (
            C.VersionMismatch("the server runs stylelayer 0.0.5 (API 1)", url=URL),
            "The server at http://h:1 does not match this plug-in (the server runs stylelayer 0.0.5 (API 1)). Install "
            "the "
            "same stylelayer version on both sides: pip install -U stylelayer, then stylelayer install-plugin.",
        ),
        (C.JobCancelled("the job was cancelled"), CANCELLED_MESSAGE),
        (
            C.JobInterrupted("the server stopped answering during job 1f (refused)", url=URL),
            "The run was interrupted: the stylelayer server at http://h:1 stopped while it worked on the layer. The "
            "image is unchanged. Start the server again ('stylelayer serve'), then press Apply again.",
        ),
        (
            C.JobFailed("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.6 GiB total)", code="out_of_memory"),
            "The server ran out of memory for this size. Choose a smaller working size or the Preview preset, or give "
            "the server more memory (--max-memory) or a GPU.",
        ),
        (
            C.JobFailed("the style engine failed: RuntimeError: boom", code="engine_error"),
            "The server could not finish the style transfer (the style engine failed: RuntimeError: boom). Try again; "
            "if "
            "it fails again, try a smaller working size and look at the server's window.",
        ),
        (
            C.StylelayerError(
                "content: 9000x9000 is 81000000 pixels; this server's limit is 50000000",
                code="too_many_pixels",
                status=413,
            ),
            "The layer is too large for this server (content: 9000x9000 is 81000000 pixels; this server's limit is "
            "50000000). Select a smaller area, or scale the image down.",
        ),
        (
            C.StylelayerError("size: must be at most 8192", code="bad_param", status=400),
            "The server refused the request: size: must be at most 8192.",
        ),
        (RuntimeError("boom"), "Unexpected error (RuntimeError): boom"),
        (RuntimeError(), "Unexpected error (RuntimeError): RuntimeError"),
    ],
)
def test_one_error_message_for_each_kind_of_failure(error, message) -> None:
    assert error_message(error) == message


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("missing", SHARED_MODULES)
def test_installers_refuse_a_plugin_without_a_shared_module(tmp_path, monkeypatch, host, missing) -> None:
    import stylelayer.install

    installer = importlib.import_module(f"stylelayer.install.{host}")
    root = tmp_path / "plugins"
    shutil.copytree(REPO / "plugins", root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "common" / missing).unlink()
    monkeypatch.setattr(stylelayer.install, "plugins_root", lambda: root)
    with pytest.raises(FileNotFoundError, match=missing):
        installer.install(tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    if host == "krita":
        with pytest.raises(FileNotFoundError, match=missing):
            installer.build_zip(tmp_path / "plugin.zip")
        assert not (tmp_path / "plugin.zip").exists()


def test_presets_defaults_and_the_strength_slider() -> None:
    assert PRESETS["full"] == (0, 200) and set(PRESET_LABELS) == set(PRESETS)
    for name, (size, iterations) in PRESETS.items():
        assert matching_preset(size, iterations) == name
        assert StyleParams.from_dict(build_params(iterations, size=size)).size == size
    assert matching_preset(300, 60) is None
    assert default_preset("cpu") == "preview"  # a first run: quick on a CPU...
    assert default_preset("cuda:0") == default_preset("mps") == "full"  # ...full on a GPU
    assert [strength_from_slider(p) for p in (0, 50, 100)] == [0.1, 1.0, 10.0]
    assert [strength_to_slider(s) for s in (0.01, 1.0, 2.0, 100.0)] == [0, 50, 65, 100]


def test_estimate_and_progress_lines() -> None:
    guess = {
        "fits": True,
        "seconds": 170.4,
        "device": "cpu",
        "speed": {"source": "default"},
        "levels": [{"width": 320, "height": 240}, {"width": 640, "height": 480, "tiled": True}],
    }
    assert estimate_text(guess) == (
        "Estimated time: about 3 min on the server's CPU, 2 levels up to 640x480 in tiles (a first guess until the "
        "server has finished a job)."
    )
    measured = {"fits": True, "seconds": 42, "device": "cuda", "speed": {"source": "measured"}, "levels": [{}]}
    assert estimate_text(measured) == "Estimated time: about 42 s on the server's CUDA."
    assert estimate_text({"fits": False, "problem": "a 8000x6000 level needs 9 GB"}) == (
        "Too large for the server's memory: a 8000x6000 level needs 9 GB."
    )
    durations = [format_duration(s) for s in (0.2, 89, 91, 5300, 5401)]
    assert durations == ["1 s", "89 s", "2 min", "88 min", "1 h 30 min"]
    tiled = {
        "state": "running",
        "iteration": 230,
        "total": 350,
        "level": 3,
        "levels": 4,
        "tile": 13,
        "tiles": 40,
        "eta_s": 130,
        "progress": 0.42,
    }
    assert progress_text(tiled) == "Iteration 230/350, level 3/4, tile 13/40, about 2 min left"
    assert progress_fraction(tiled) == 0.42  # by work, from the server
    single = {"state": "running", "iteration": 3, "total": 60, "level": 1, "levels": 1, "tile": 0, "tiles": 0}
    assert progress_text(single) == "Iteration 3/60"


def test_server_url_and_selection_edges() -> None:
    assert check_server_url(" http://gpu-box:8765/v1/ ") == "http://gpu-box:8765"
    with pytest.raises(PluginError, match="http://host:port"):
        check_server_url("gpu-box:8765")
    canvas = (0, 0, 100, 80)
    assert open_edges((10, 10, 20, 20), (10, 10, 20, 20), canvas) == (False,) * 4  # its own edges
    assert open_edges((10, 10, 20, 20), (0, 10, 40, 20), canvas) == (True, False, True, False)
    assert open_edges((0, 0, 100, 80), (0, 0, 100, 80), canvas) == (True,) * 4  # the canvas's edges


def test_the_estimate_counts_the_jobs_ahead_and_progress_starts_without_a_count() -> None:
    one = {"fits": True, "seconds": 60, "device": "cpu", "speed": {"source": "measured"}, "levels": [{}]}
    assert estimate_text({**one, "jobs_ahead": 0, "wait_seconds": 0}) == (
        "Estimated time: about 60 s on the server's CPU."
    )
    assert estimate_text({**one, "jobs_ahead": 1, "wait_seconds": 120}) == (
        "Estimated time: about 3 min on the server's CPU, after 1 job ahead of it (about 2 min)."
    )
    assert "after 2 jobs ahead" in estimate_text({**one, "jobs_ahead": 2, "wait_seconds": 5})
    # planning and the set-up before the first iteration: no "Iteration 0/40" that turns into "1/60"
    assert progress_text({"state": "running", "iteration": 0, "total": 60}) == "Starting on the server…"
    assert progress_text({"state": "running", "iteration": 0}, "T") == "T: starting on the server…"


def test_messages_are_sentences_and_a_missing_style_is_said_alike(tmp_path) -> None:
    assert sentence("select a layer") == "Select a layer."
    assert sentence("Done.") == "Done." and sentence("") == ""
    assert sentence("http://h:1 answers") == "http://h:1 answers."  # an address keeps its case
    error = PluginError("this image is indexed: convert it first")
    assert error_message(error) == "This image is indexed: convert it first."
    missing = tmp_path / "nope.png"
    with pytest.raises(PluginError) as caught:
        check_style_file(str(missing))
    assert str(caught.value) == f"The style image {missing} does not exist: choose another file."
    with pytest.raises(PluginError, match="Choose a style image"):
        check_style_file(" ")
    missing.write_bytes(b"x")
    assert check_style_file(f" {missing} ") == str(missing)
    assert NOT_CONNECTED_YET.startswith("Not connected yet")


def test_results_stack_up_above_the_target_and_are_clear_outside_the_selection() -> None:
    names = ["Background", "Photo", "Style: a", "Style: a #2", "Lines", "Style: b"]
    assert insert_above(names, 1) == 3  # above the earlier results, under "Lines"
    assert insert_above(names, 4) == 5
    assert insert_above(names, 5) == 5
    assert insert_above(["Photo"], 0) == 0
    rgba = bytes([1, 2, 3, 200, 4, 5, 6, 255, 7, 8, 9, 90])
    assert clear_outside(rgba, bytes([0, 255, 17])) == bytes([1, 2, 3, 0, 4, 5, 6, 255, 7, 8, 9, 90])
    with pytest.raises(ValueError):
        clear_outside(rgba, b"\x00")
    import random

    seeds = {new_seed(random.Random(n)) for n in range(50)}
    assert len(seeds) == 50 and all(1 <= seed <= MAX_SEED for seed in seeds)


def test_the_token_file_is_readable_by_the_user_only(tmp_path) -> None:
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    path = token_path(env)
    assert path == str(tmp_path / "cfg" / "stylelayer" / "plugin-token")
    assert token_path({"HOME": str(tmp_path / "home")}) == str(
        tmp_path / "home" / ".config" / "stylelayer" / "plugin-token"
    )
    assert load_token(path) == ""
    save_token(" s3cret ", path)
    assert load_token(path) == "s3cret"
    assert Path(path).stat().st_mode & 0o777 == 0o600
    assert Path(path).parent.stat().st_mode & 0o777 == 0o700
    Path(path).chmod(0o644)  # an older or hand-made file readable by others: replaced by a 0600 one
    save_token("other", path)
    assert Path(path).stat().st_mode & 0o777 == 0o600 and load_token(path) == "other"
    save_token("", path)
    assert not Path(path).exists()
    # migration: a token from kritarc or GIMP's values moves in, unless the file holds one already
    assert migrate_token("", path) == ""
    assert migrate_token("old", path) == "old" and load_token(path) == "old"
    assert migrate_token("older", path) == "old"
