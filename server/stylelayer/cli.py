"""Command line: `stylelayer run|texture|example|serve|install-plugin`.

Bad input ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from . import __version__
from .engine_flags import DEVICES, add_engine_arguments, device_name

if TYPE_CHECKING:
    from .core.regions import Region

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one clear line instead of argparse's usage dump
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# Flags that map one-to-one onto StyleParams fields: (flag, field, type, metavar, help). StyleParams validates them.
_PARAM_FLAGS: tuple[tuple[str, str, object, str, str], ...] = (
    ("--size", "size", int, "PX", "longest side of the working image in pixels (0 = content size) [512]"),
    (
        "--iterations",
        "iterations",
        int,
        "N",
        "optimisation steps at the coarsest level; each finer one runs half [300]",
    ),
    ("--optimizer", "optimizer", str, "lbfgs|adam", "lbfgs (default, as in the paper) or adam"),
    ("--lr", "lr", float, "STEP", "step size (default 1.0 for L-BFGS, 0.02 for Adam)"),
    ("--content-weight", "content_weight", float, "ALPHA", "α, weight of the content loss [1]"),
    ("--style-weight", "style_weight", float, "BETA", "β, weight of the style loss [1e4]"),
    ("--tv-weight", "tv_weight", float, "GAMMA", "γ, weight of the total-variation loss [1]"),
    ("--init", "init", str, "content|noise|style", "starting image: content, noise or style [content]"),
    ("--seed", "seed", int, "N", "random seed; the same seed gives the same output on the CPU"),
    ("--style-scale", "style_scale", float, "FACTOR", "size of the style relative to the working image [1.0]"),
    ("--style-blend", "style_blend", str, "W,W,...", "comma-separated weights, one per style image"),
    ("--content-layer", "content_layer", str, "LAYER", "VGG layer for the content loss [conv4_2]"),
    (
        "--style-layers",
        "style_layers",
        str,
        "LAYER,...",
        "comma-separated VGG layers for the style loss [conv1_1..conv5_1]",
    ),
    ("--style-layer-weights", "style_layer_weights", str, "W,W,...", "comma-separated weights, one per style layer"),
    ("--pooling", "pooling", str, "avg|max", "avg (default, as recommended in the paper) or max"),
    (
        "--scales",
        "scales",
        int,
        "N",
        "coarse-to-fine levels, each twice the size of the previous; 0 = from ~512 px [0]",
    ),
    ("--precision", "precision", str, "auto|fp32|bf16", "auto (bf16 where the hardware has it), fp32 or bf16"),
    ("--mode", "mode", str, "MODE", "transfer, inversion (style weight 0) or texture (content weight 0)"),
    ("--loss-units", "loss_units", str, "UNITS", "size_invariant (the same look at every size) or paper (raw sums)"),
    (
        "--region-weights",
        "region_weights",
        str,
        "W,W,...",
        "comma-separated weights, one per --region (× style weight) [1]",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stylelayer", description="Neural style transfer (Gatys et al.) for painters.")
    parser.add_argument("--version", action="version", version=f"stylelayer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="stylise CONTENT with one or more STYLE images")
    run.add_argument("content", type=Path, help="content image")
    run.add_argument("styles", type=Path, nargs="*", help="style image(s); none for --mode inversion")
    run.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="MASK=STYLE[,STYLE...]",
        help="paint where MASK is white (a grey level 0-255, times its alpha) in these styles; repeat per region."
        " Where no region is, the style images given above apply, or (none given) the content stays",
    )
    _add_job_arguments(run)

    texture = sub.add_parser("texture", help="synthesise a texture from STYLE images (no content)")
    texture.add_argument("styles", type=Path, nargs="+", help="style image(s)")
    texture.add_argument(
        "--output-size", default="512x512", metavar="WxH", help="WIDTHxHEIGHT of the texture [512x512]"
    )
    _add_job_arguments(texture)

    example = sub.add_parser("example", help="stylise the bundled example (Tübingen in the style of Starry Night)")
    example.add_argument("-o", "--output", type=Path, default=Path("example-result.png"), metavar="FILE")
    example.add_argument("--size", type=int, default=384, metavar="PX", help="working size [384]")
    example.add_argument("--iterations", type=int, default=150, metavar="N", help="iterations [150]")
    example.add_argument("--device", default="auto", type=device_name, metavar="|".join(DEVICES), help="[auto]")
    example.add_argument("--quiet", action="store_true")

    serve = sub.add_parser("serve", help="run the local HTTP server the Krita and GIMP plug-ins talk to")
    from .api import serve as serve_module

    serve_module.add_arguments(serve)

    install = sub.add_parser("install-plugin", help="install the Krita or GIMP plug-in for this user")
    install.add_argument("host", choices=("krita", "gimp"))
    install.add_argument(
        "--dest", type=Path, metavar="DIR", help="install into this folder instead of the host's default"
    )
    install.add_argument(
        "--zip", type=Path, metavar="ZIP", help="(krita) build the zip for 'Import Python Plugin from File'"
    )
    return parser


def _add_job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="FILE", help="result image (PNG keeps metadata)"
    )
    for flag, dest, kind, metavar, help_text in _PARAM_FLAGS:
        parser.add_argument(flag, dest=f"param_{dest}", type=kind, metavar=metavar, help=help_text)  # type: ignore[arg-type]
    parser.add_argument(
        "--preserve-colors",
        dest="param_preserve_colors",
        action="store_true",
        default=None,
        help="transfer luminance only and keep the content's colours",
    )
    add_engine_arguments(parser)
    parser.add_argument("--save-every", type=int, default=0, metavar="N", help="also save every N-th iterate")
    parser.add_argument("--loss-plot", type=Path, metavar="PNG", help="draw the loss curves into this PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            from .api import serve as serve_module

            return serve_module.run(args)
        if args.command == "install-plugin":
            return _install_plugin(args)
        return _run_job(args)
    except UsageError as exc:
        print(f"stylelayer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("stylelayer: interrupted", file=sys.stderr)
        return 130


def _run_job(args: argparse.Namespace) -> int:
    from .core.engine import Cancelled, OutOfMemory, StyleEngine, check_inputs
    from .core.imaging import ImageError, decode_image
    from .core.params import ParamError, StyleParams
    from .core.regions import size_notes
    from .core.vgg import WeightsError

    if args.command == "example":
        assets = resources.files("stylelayer") / "assets"
        content_path = Path(str(assets / "tubingen.jpg"))
        style_paths = [Path(str(assets / "starry_night.jpg"))]
        raw = {"size": args.size, "iterations": args.iterations, "seed": 0}
        args.weights, args.save_every, args.loss_plot, args.max_memory = "caffe", 0, None, None
    else:
        content_path = getattr(args, "content", None)
        style_paths = list(args.styles)
        raw = {
            name[len("param_") :]: value
            for name, value in vars(args).items()
            if name.startswith("param_") and value is not None
        }
        if args.command == "texture":
            raw["mode"] = "texture"
            raw["output_size"] = args.output_size
    _check_output(args.output)
    if args.save_every < 0:
        raise UsageError("--save-every must be 0 or more")
    if args.loss_plot is not None:
        _check_output(args.loss_plot)
    try:
        params = StyleParams.from_dict(raw)
        content = decode_image(content_path, "content") if content_path is not None else None
        styles = [decode_image(path, f"style {path}") for path in style_paths]
        regions = [_region(text) for text in getattr(args, "region", [])]
        check_inputs(content, styles, params, regions)
        engine = StyleEngine(weights=args.weights, device=args.device, max_memory=args.max_memory)
    except (ParamError, ImageError, WeightsError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if content is not None:
        for note in size_notes(regions, content.size):
            print(f"stylelayer: note: {note}", file=sys.stderr)

    bar = None if args.quiet else _progress_bar()
    plans: list[str] = []

    def on_progress(progress) -> None:
        if bar is not None:
            if progress.plan and progress.plan not in plans:  # a new level: say how it runs
                plans.append(progress.plan)
                bar.write(f"level {progress.level}/{progress.levels}: {progress.plan}")
            bar.total = progress.total
            bar.update(progress.iteration - bar.n)
            postfix = {k: f"{v:.3g}" for k, v in progress.losses.items()}
            if progress.tiles:
                postfix["tile"] = f"{progress.tile}/{progress.tiles}"
            bar.set_postfix(postfix, refresh=progress.tile > 0)
        if progress.preview is not None and args.save_every:
            path = args.output.with_name(f"{args.output.stem}.iter{progress.iteration:05d}.png")
            progress.preview.save(path)

    try:
        result = engine.stylize(
            content, styles, params, progress=on_progress, preview_every=args.save_every, regions=regions
        )
    except (ValueError, Cancelled) as exc:  # BudgetError is a ValueError: the budget cannot hold one level
        raise UsageError(str(exc)) from None
    except OutOfMemory as exc:
        raise UsageError(f"{exc} (or give a smaller --max-memory, so that larger levels are tiled)") from None
    finally:
        if bar is not None:
            bar.close()
    _save_result(result, args.output)
    if args.loss_plot is not None:
        from .core.plot import plot_losses

        plot_losses(result.history, args.loss_plot)
    if not args.quiet:
        losses = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
        print(
            f"wrote {args.output} ({result.iterations} iterations, {result.elapsed:.1f} s, seed {result.seed}; "
            f"{losses})"
        )
    return 0


def _region(text: str) -> Region:
    """A --region MASK=STYLE[,STYLE...]: the mask and its style images, decoded (ImageError if one cannot be)."""
    from .core.imaging import decode_image
    from .core.regions import Region

    mask, _, styles = text.partition("=")
    paths = [Path(part) for part in styles.split(",") if part]
    if not mask or not paths:
        raise UsageError(f"--region {text!r}: give MASK=STYLE, e.g. --region sky.png=starry.jpg")
    return Region(decode_image(Path(mask), f"region mask {mask}"), tuple(decode_image(p, f"style {p}") for p in paths))


def _progress_bar():
    from tqdm import tqdm

    return tqdm(total=None, unit="it", desc="stylelayer", dynamic_ncols=True)  # the engine reports the total


def _check_output(path: Path) -> None:
    from PIL import Image

    if path.suffix.lower() not in Image.registered_extensions():
        raise UsageError(f"{path}: unknown image format {path.suffix!r} (use .png, .jpg, ...)")
    if not path.parent.exists():
        raise UsageError(f"{path}: folder {path.parent} does not exist")


def _save_result(result, path: Path) -> None:
    from .core.imaging import encode_png

    image = result.image
    if path.suffix.lower() == ".png":  # with the parameters and seed that reproduce it
        path.write_bytes(encode_png(image, result.params, result.seed))
        return
    if image.mode == "RGBA" and path.suffix.lower() in (".jpg", ".jpeg"):
        image = image.convert("RGB")
    image.save(path)


def _install_plugin(args: argparse.Namespace) -> int:
    """Install (or zip) a plug-in and say where it went and how to reach it; a --dest the host would not read is
    refused with exit code 2."""
    from .install import InstallError

    try:
        if args.host == "krita":
            return _install_krita(args)
        return _install_gimp(args)
    except InstallError as exc:
        print(f"stylelayer install-plugin: {exc}", file=sys.stderr)
        return 2


def _install_krita(args: argparse.Namespace) -> int:
    from .install import krita

    if args.zip is not None:
        zipped = krita.build_zip(args.zip)
        print(
            f"wrote {zipped}. In Krita: Tools > Scripts > Import Python Plugin from File…, choose it, restart "
            "Krita; then Tools > Scripts > Style Transfer…"
        )
        return 0
    resources, kritarc = (None, None) if args.dest is None else krita.resource_dir_for(args.dest)
    where = krita.install(resources, kritarc=kritarc)
    kritarc = kritarc or krita.kritarc_used(resources)
    print(
        f"installed the Krita plug-in into {where} and enabled it in {kritarc}.\n"
        "Restart Krita, then Tools > Scripts > Style Transfer… (if it is not there: Settings > Configure Krita > "
        "Python Plugin Manager, tick 'Stylelayer Style Transfer', restart Krita)."
    )
    return 0


def _install_gimp(args: argparse.Namespace) -> int:
    from .install import gimp

    if args.zip is not None:
        raise UsageError("--zip is for Krita; GIMP plug-ins are installed as a folder")
    where = gimp.install(None if args.dest is None else gimp.plugin_dir_for(args.dest))
    print(
        f"installed the GIMP plug-in into {where}.\nRestart GIMP (it registers new plug-ins as it starts), then "
        "Filters > Artistic > Neural Style Transfer…"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
