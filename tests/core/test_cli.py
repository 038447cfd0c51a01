"""The command line end to end at a tiny size, and every bad-input path (one line, exit code 2)."""

import json
import subprocess
import sys

import pytest
from PIL import Image
from testimages import ASSETS, TEST_IMAGES, band_mask

from stylelayer.cli import build_parser, main

CONTENT = str(ASSETS / "tubingen.jpg")
STYLE = str(ASSETS / "starry_night.jpg")


def test_run_end_to_end_in_a_subprocess(tmp_path):
    out = tmp_path / "out.png"
    plot = tmp_path / "loss.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stylelayer.cli",
            "run",
            CONTENT,
            STYLE,
            "-o",
            str(out),
            "--size",
            "48",
            "--iterations",
            "6",
            "--seed",
            "3",
            "--save-every",
            "3",
            "--loss-plot",
            str(plot),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "6/6" in proc.stderr  # the tqdm progress bar reached the end
    assert f"wrote {out}" in proc.stdout
    result = Image.open(out)
    assert result.size == Image.open(CONTENT).size
    assert json.loads(result.text["stylelayer:params"])["iterations"] == 6
    assert result.text["stylelayer:seed"] == "3"
    assert sorted(p.name for p in tmp_path.glob("out.iter*.png")) == ["out.iter00003.png", "out.iter00006.png"]
    plot_img = Image.open(plot).convert("RGB")
    assert plot_img.size == (800, 480)
    assert (214, 39, 40) in {c for _, c in plot_img.getcolors(100000)}  # the style curve was drawn


def test_texture_and_inversion_modes(tmp_path):
    out = tmp_path / "tex.png"
    assert main(["texture", STYLE, "-o", str(out), "--output-size", "40x24", "--iterations", "2", "--quiet"]) == 0
    assert Image.open(out).size == (40, 24)
    inv = tmp_path / "inv.jpg"
    assert (
        main(["run", CONTENT, "-o", str(inv), "--mode", "inversion", "--size", "32", "--iterations", "2", "--quiet"])
        == 0
    )
    assert Image.open(inv).format == "JPEG"


def test_a_style_per_region(tmp_path, capsys):
    """`--region MASK=STYLE` twice: each half of the picture in its own style; a mask of another size is stretched,
    with a note."""
    sky, ground = tmp_path / "sky.png", tmp_path / "ground.png"
    band_mask((64, 48), 0, 0.5, feather=4).save(sky)
    band_mask((64, 48), 0.5, 1, feather=4).save(ground)
    scream = str(TEST_IMAGES / "the_scream.jpg")
    outputs = []
    for first, second in ((STYLE, scream), (scream, STYLE)):
        out = tmp_path / f"out{len(outputs)}.png"
        args = ["run", CONTENT, "--region", f"{sky}={first}", "--region", f"{ground}={second}", "-o", str(out)]
        assert main([*args, "--size", "48", "--iterations", "4", "--seed", "0", "--quiet"]) == 0
        outputs.append(Image.open(out).convert("RGB"))
    err = capsys.readouterr().err
    assert "note: region 1's mask is 64x48 px, the content 512x384: the mask is stretched" in err
    assert outputs[0].size == Image.open(CONTENT).size
    assert outputs[0].tobytes() != outputs[1].tobytes()  # the styles went where the masks say


def test_rgba_content_keeps_alpha(tmp_path):
    src = Image.open(CONTENT).convert("RGBA").resize((40, 30))
    alpha = Image.radial_gradient("L").resize((40, 30))
    src.putalpha(alpha)
    src.save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    assert main(["run", str(tmp_path / "in.png"), STYLE, "-o", str(out), "--iterations", "2", "--quiet"]) == 0
    assert Image.open(out).getchannel("A").tobytes() == alpha.tobytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.png", STYLE, "-o", "{tmp}/o.png"], "does not exist"),
        (["run", "{tmp}/notimage.png", STYLE, "-o", "{tmp}/o.png"], "not a readable image"),
        (["run", "{tmp}/truncated.png", STYLE, "-o", "{tmp}/o.png"], "content:"),
        (["run", CONTENT, STYLE, "-o", "{tmp}/o.png", "--iterations", "-4"], "iterations: must be between"),
        (["run", CONTENT, STYLE, "-o", "{tmp}/o.png", "--iterations", "lots"], "invalid int value"),
        (["run", CONTENT, STYLE, "-o", "{tmp}/o.png", "--style-weight", "nan"], "style_weight: must be finite"),
        (["run", CONTENT, STYLE, "-o", "{tmp}/o.png", "--optimizer", "sgd"], "optimizer: must be one of"),
        (["run", CONTENT, STYLE, "-o", "{tmp}/o.png", "--style-blend", "1,1"], "style_blend: has 2 weights"),
        (["run", CONTENT, "-o", "{tmp}/o.png"], "at least one style image"),
        (["run", CONTENT, STYLE, "-o", "{tmp}/o.xyz"], "unknown image format"),
        (["run", CONTENT, STYLE, "-o", "{tmp}/no/such/dir/o.png"], "does not exist"),
        (["run", CONTENT, STYLE, "-o", "{tmp}/o.png", "--device", "cuda9"], "unknown device"),
        (["run", CONTENT, STYLE, "-o", "{tmp}/o.png", "--weights", "{tmp}/none.pth"], "does not exist"),
        (["run", CONTENT, STYLE, "-o", "{tmp}/o.png", "--save-every", "-1"], "--save-every"),
        (["texture", STYLE, "-o", "{tmp}/o.png", "--output-size", "big"], "output_size"),
        (["run", CONTENT, STYLE], "-o/--output"),
        (["run", CONTENT, "--region", "{tmp}/black.png=" + STYLE, "-o", "{tmp}/o.png"], "region 1's mask is empty"),
        (["run", CONTENT, "--region", "sky.png", "-o", "{tmp}/o.png"], "--region 'sky.png': give MASK=STYLE"),
        (["run", CONTENT, "--region", "{tmp}/missing.png=" + STYLE, "-o", "{tmp}/o.png"], "region mask"),
        (
            ["run", CONTENT, "--region", "{tmp}/half.png=" + STYLE, "--region-weights", "1,2", "-o", "{tmp}/o.png"],
            "region_weights: has 2 weights but 1 regions",
        ),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "notimage.png").write_text("hello, not a picture")
    (tmp_path / "truncated.png").write_bytes((ASSETS / "tubingen.jpg").read_bytes()[:2000])
    Image.new("L", (8, 8), 0).save(tmp_path / "black.png")
    band_mask((8, 8), 0, 0.5).save(tmp_path / "half.png")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors exit from inside parse_args
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_install_plugin_commands(tmp_path, capsys):
    assert main(["install-plugin", "gimp", "--dest", str(tmp_path / "plug-ins")]) == 0
    gimp_main = tmp_path / "plug-ins" / "stylelayer_gimp" / "stylelayer_gimp.py"
    assert gimp_main.is_file() and gimp_main.stat().st_mode & 0o111
    out = capsys.readouterr().out
    assert (
        f"into {tmp_path / 'plug-ins' / 'stylelayer_gimp'}" in out
        and "Filters > Artistic > Neural Style Transfer" in out
    )
    assert main(["install-plugin", "krita", "--dest", str(tmp_path / "krita")]) == 0
    assert (tmp_path / "krita" / "pykrita" / "stylelayer_krita" / "__init__.py").is_file()
    assert "enable_stylelayer_krita=true" in (tmp_path / "kritarc").read_text()
    zip_path = tmp_path / "stylelayer-krita.zip"
    assert main(["install-plugin", "krita", "--zip", str(zip_path)]) == 0
    assert zip_path.stat().st_size > 1000
    assert main(["install-plugin", "gimp", "--zip", str(zip_path)]) == 2
    assert "--zip is for Krita" in capsys.readouterr().err


def test_install_plugin_refuses_a_folder_the_host_does_not_read(tmp_path, capsys, monkeypatch):
    """GIMP runs plug-ins only from its plug-ins folders, Krita only from <resource folder>/pykrita: another --dest
    would install a plug-in that never appears. A GIMP settings folder gets its plug-ins folder."""
    monkeypatch.setenv("GIMP3_DIRECTORY", str(tmp_path / "gimp-settings"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for host in ("gimp", "krita"):
        assert main(["install-plugin", host, "--dest", str(tmp_path / "somewhere")]) == 2
        err = capsys.readouterr().err
        assert f"would not load a plug-in from {tmp_path / 'somewhere'}" in err, err
    assert not (tmp_path / "somewhere").exists()
    settings = tmp_path / "GIMP" / "3.0"  # the folder that holds gimprc: the plug-in goes into its plug-ins
    assert main(["install-plugin", "gimp", "--dest", str(settings)]) == 0
    assert (settings / "plug-ins" / "stylelayer_gimp" / "stylelayer_gimp.py").is_file()
    pykrita = tmp_path / "res" / "pykrita"  # Krita's pykrita folder itself: its resource folder is meant
    pykrita.mkdir(parents=True)
    assert main(["install-plugin", "krita", "--dest", str(pykrita)]) == 0
    assert (pykrita / "stylelayer_krita" / "__init__.py").is_file() and not (pykrita / "pykrita").exists()
    capsys.readouterr()
    gimprc = tmp_path / "gimp-settings" / "gimprc"  # a folder added in Preferences > Folders > Plug-ins
    gimprc.parent.mkdir()
    gimprc.write_text(f'(plug-in-path "${{gimp_dir}}/plug-ins:{tmp_path / "my-plugins"}")\n')
    assert main(["install-plugin", "gimp", "--dest", str(tmp_path / "my-plugins")]) == 0
    assert (tmp_path / "my-plugins" / "stylelayer_gimp" / "stylelayer_gimp.py").is_file()


def test_engine_flags_are_the_same_for_run_texture_and_serve():
    """--device, --weights and --max-memory are defined once: same help, same validation, in every command."""
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    flags = {"--device", "--weights", "--max-memory"}

    def engine_flags(name: str) -> list[tuple[str, object, object, object]]:
        actions = [a for a in commands[name]._actions if set(a.option_strings) & flags]
        return sorted((a.option_strings[0], a.help, a.type, a.metavar) for a in actions)  # type: ignore[misc]

    assert len(engine_flags("run")) == 3
    assert engine_flags("run") == engine_flags("texture") == engine_flags("serve")
    for command in ("run", "serve"):
        with pytest.raises(SystemExit):
            parser.parse_args(
                [command, "--max-memory", "lots"] + (["c.png", "-o", "o.png"] if command == "run" else [])
            )


def test_help_shows_readable_placeholders():
    """argparse's fallback spells the destination (PARAM_SIZE, TOKEN_FILE): every flag here names what it takes."""
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    placeholders = {
        action.metavar
        for name in ("run", "texture", "serve", "example", "install-plugin")
        for action in commands[name]._actions
        if action.option_strings and action.nargs != 0
    }
    assert None not in placeholders
    assert not [p for p in placeholders if "_" in str(p)]
    assert {"PX", "N", "SIZE", "FILE"} <= placeholders
