"""Seconds per iteration and peak memory: stylelayer's engine vs a straightforward reference loop, side by side.

The reference is what a first implementation looks like (the PyTorch-tutorial shape): an nn.Sequential VGG19 with
trainable parameters, run in fp32 NCHW to conv5_1 every iteration, the same Gatys losses, the same L-BFGS. Each
case runs in its own subprocess (so peak RSS is its own), cases alternate engine/reference so machine noise hits
both, and the report gives ratios. Usage:

    python bench/bench_engine.py [--sizes 256 512] [--iterations 12] [--repeats 2] [--loss-iterations 100]

Timing runs are short; whether bf16 changes the result is judged separately, on final losses after
--loss-iterations at the smallest size (early L-BFGS iterates differ too much between runs to compare).
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


def _images(size: int):
    from PIL import Image

    content = Image.open(CONTENT).convert("RGB").resize((size, size * 3 // 4), Image.Resampling.LANCZOS)
    style = Image.open(STYLE).convert("RGB")
    return content, style


def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_engine(size: int, iterations: int, device_name: str, precision: str) -> dict:
    from stylelayer.core.engine import StyleEngine
    from stylelayer.core.params import StyleParams

    engine = StyleEngine(device=device_name)
    content, style = _images(size)
    raw = {"size": 0, "scales": 1, "iterations": iterations, "seed": 0, "precision": precision}
    params = StyleParams.from_dict(raw)
    stamps: list[float] = []
    result = engine.stylize(content, [style], params, progress=lambda p: stamps.append(time.perf_counter()))
    return {
        "s_per_iter": _steady_rate(stamps),
        "peak_mb": _peak_memory_mb(engine.device),
        "final_loss": result.losses["total"],
        "precision": engine.precision(params),
    }


def run_reference(size: int, iterations: int, device_name: str) -> dict:
    import torch
    from torch import nn

    from stylelayer.core import imaging
    from stylelayer.core.engine import resolve_device
    from stylelayer.core.losses import content_loss, gram_matrix, positions, style_layer_loss, tv_loss
    from stylelayer.core.params import StyleParams
    from stylelayer.core.vgg import load_vgg19

    device = resolve_device(device_name)
    vgg = load_vgg19("caffe")
    layers: list[nn.Module] = []
    names: list[str] = []
    for name, conv in vgg.convs.items():
        conv.requires_grad_(True)  # the tutorial never freezes the network
        layers += [conv, nn.ReLU()]
        names += [name, f"relu_{name}"]
        if name in ("conv1_2", "conv2_2", "conv3_4", "conv4_4"):
            layers.append(nn.AvgPool2d(2))
            names.append("pool")
    net = nn.Sequential(*layers).to(device)
    p = StyleParams()
    wanted = set(p.style_layers) | {p.content_layer}

    def features(x: torch.Tensor) -> dict[str, torch.Tensor]:
        out, h = {}, vgg.preprocess(x)
        for name, layer in zip(names, net, strict=True):  # runs all the way, to conv5_4
            h = layer(h)
            if name.startswith("relu_") and name[5:] in wanted:
                out[name[5:]] = h
        return out

    content_img, style_img = _images(size)
    content = imaging.to_tensor(content_img, device)
    style = imaging.to_tensor(imaging.fit_longest_side(style_img, size), device)
    with torch.no_grad():
        target_c = features(content)[p.content_layer]
        target_g = {k: gram_matrix(v) for k, v in features(style).items() if k in p.style_layers}
    image = content.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([image], lr=1.0, max_iter=1, history_size=100, tolerance_grad=0, tolerance_change=0)
    scale: list[float] = []
    last = {}

    def closure() -> torch.Tensor:
        opt.zero_grad()
        f = features(image)
        s = sum(0.2 * style_layer_loss(f[k], g / positions(f[k])) for k, g in target_g.items())  # the paper's units
        total = p.content_weight * content_loss(f[p.content_layer], target_c) + p.style_weight * s
        total = total + p.tv_weight * tv_loss(image * 255)
        if not scale:
            scale.append(1.0 / float(total.detach()))
        (total * scale[0]).backward()
        image.grad = image.grad.contiguous()  # oneDNN may hand back a channels_last gradient; L-BFGS needs NCHW
        last["total"] = float(total.detach())
        return total

    stamps = []
    for _ in range(iterations):
        opt.step(closure)
        stamps.append(time.perf_counter())
    return {
        "s_per_iter": _steady_rate(stamps),
        "peak_mb": _peak_memory_mb(device),
        "final_loss": last["total"],
        "precision": "fp32",
    }


def _steady_rate(stamps: list[float]) -> float:
    """Median seconds per iteration, leaving out the first two (warm-up, first L-BFGS steps)."""
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)][2:]
    return statistics.median(steps)


def _case(kind: str, size: int, iterations: int, device: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--case",
        kind,
        "--sizes",
        str(size),
        "--iterations",
        str(iterations),
        "--device",
        device,
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--loss-iterations", type=int, default=100)
    parser.add_argument("--case", choices=("engine", "engine-fp32", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        size = args.sizes[0]
        if args.case == "reference":
            print(json.dumps(run_reference(size, args.iterations, args.device)))
        else:
            precision = "fp32" if args.case == "engine-fp32" else "auto"
            print(json.dumps(run_engine(size, args.iterations, args.device, precision)))
        return 0

    print(f"device={args.device} iterations={args.iterations} repeats={args.repeats} (median of repeats)")
    header = f"{'size':>9} {'case':>12} {'prec':>5} {'s/iter':>8} {'peak MB':>8} {'final loss':>11}"
    print(header)
    for size in args.sizes:
        runs: dict[str, list[dict]] = {"reference": [], "engine-fp32": [], "engine": []}
        for _ in range(args.repeats):  # interleaved, so noise on this machine hits all cases alike
            for kind in runs:
                runs[kind].append(_case(kind, size, args.iterations, args.device))
        summary = {}
        for kind, results in runs.items():
            summary[kind] = {
                key: statistics.median(r[key] for r in results) for key in ("s_per_iter", "peak_mb", "final_loss")
            }
            s = summary[kind]
            print(
                f"{size:>4}x{size * 3 // 4:<4} {kind:>12} {results[0]['precision']:>5} {s['s_per_iter']:8.3f} "
                f"{s['peak_mb']:8.0f} {s['final_loss']:11.4g}"
            )
        ref, fp32, eng = summary["reference"], summary["engine-fp32"], summary["engine"]
        print(
            f"  speed-up vs reference: engine {ref['s_per_iter'] / eng['s_per_iter']:.2f}x, "
            f"engine fp32 {ref['s_per_iter'] / fp32['s_per_iter']:.2f}x; peak memory engine/reference "
            f"{eng['peak_mb'] / ref['peak_mb']:.2f}"
        )
    if args.loss_iterations:
        size = min(args.sizes)
        fp32 = _case("engine-fp32", size, args.loss_iterations, args.device)
        auto = _case("engine", size, args.loss_iterations, args.device)
        change = 100 * (auto["final_loss"] / fp32["final_loss"] - 1)
        print(
            f"final loss after {args.loss_iterations} iterations at {size} px: fp32 {fp32['final_loss']:.4g}, "
            f"{auto['precision']} {auto['final_loss']:.4g} ({change:+.1f}%)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
