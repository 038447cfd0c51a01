"""Throughput of the Ray worker pool against the in-process worker: 16 small jobs through HTTP, jobs per minute.

Each configuration is a real `stylelayer serve` process with the real engine on the CPU: the in-process worker
(torch's default threads), then Ray pools on a local cluster that this script starts (the servers join it with
--ray-address, as on a cluster): 1 actor with all cores, one actor per core, and more actors than cores. All jobs
are queued at once; the clock runs from the first submission until the server counts the last one done. Each
worker first runs one job untimed (engine loaded, Gram targets cached), so the figures are steady state. The pool's
overhead per job is measured twice: from the batch (1 actor with all cores against the in-process worker, the same
compute) and directly, as the median time from submission to done of a one-iteration 32 px job on an idle server.
With --repeats, the configurations take turns (so load from elsewhere hits all of them) and each reports its
median. Usage:

    python bench/bench_pool.py [--jobs 16] [--size 64] [--iterations 20] [--workers 1 2 4] [--repeats 1]

Needs the Ray extra (pip install -e '.[ray]'). Other load on the machine shows up in the figures: run it alone.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins" / "common"))
ASSETS = REPO / "server" / "stylelayer" / "assets"
SERVE = "import sys; from stylelayer.cli import main; sys.exit(main(sys.argv[1:]))"


def _png(name: str, size: int) -> bytes:
    from PIL import Image

    image = Image.open(ASSETS / name).convert("RGB")
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _done(client) -> int:
    jobs = client.info()["jobs"]
    if jobs["failed"] or jobs["cancelled"]:
        raise SystemExit(f"jobs did not finish: {jobs}")
    return jobs["done"]


def _wait_done(client, count: int, poll: float) -> None:
    while _done(client) < count:
        time.sleep(poll)


def measure(serve_args: list[str], args: argparse.Namespace, workers: int, folder: str) -> dict[str, float]:
    """Start `stylelayer serve` with these flags, warm each worker up, then time the batch and the latency."""
    from stylelayer_client import StylelayerClient

    argv = [
        "serve",
        "--port",
        "0",
        "--device",
        "cpu",
        "--max-queue",
        str(args.jobs + 8),
        "--styles-dir",
        f"{folder}/styles",
        "--data-dir",
        f"{folder}/data",
        *serve_args,
    ]
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", SERVE, *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        while "listening on" not in (line := proc.stdout.readline()):
            if not line:
                raise SystemExit(f"stylelayer serve {' '.join(serve_args)} did not start")
        client = StylelayerClient(line.strip().rsplit(" ", 1)[1], timeout=30)
        while client.health()["engine"] != "ready":
            time.sleep(0.2)
        content, style = _png("tubingen.jpg", args.size), _png("starry_night.jpg", args.size)
        params = {"size": args.size, "iterations": args.iterations, "seed": 1}
        for _ in range(workers):
            client.submit(content, style, params=params)
        _wait_done(client, workers, 0.2)
        started = time.perf_counter()
        for _ in range(args.jobs):
            client.submit(content, style, params=params)
        _wait_done(client, workers + args.jobs, 0.1)
        batch = time.perf_counter() - started
        tiny_content, tiny_style = _png("tubingen.jpg", 32), _png("starry_night.jpg", 32)
        latencies = []
        for _ in range(args.latency_jobs):
            started = time.perf_counter()
            job_id = client.submit(tiny_content, tiny_style, params={"size": 32, "iterations": 1})
            while client.status(job_id)["state"] != "done":
                time.sleep(0.005)
            latencies.append(time.perf_counter() - started)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return {"batch_s": batch, "latency_s": statistics.median(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="Ray pool sizes to measure")
    parser.add_argument("--latency-jobs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    import ray

    cores = os.cpu_count() or 1
    folder = tempfile.mkdtemp(prefix="bench-pool-")
    ray.init(num_cpus=max(cores, *args.workers), include_dashboard=False, log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    configs = [("in-process worker", f"{cores} (torch threads)", [], 1)]
    for count in args.workers:
        per_worker = max(1, cores // count)  # all cores for one actor; more actors than cores: one each
        flags = [
            "--workers",
            "ray",
            "--ray-address",
            address,
            "--ray-workers",
            str(count),
            "--cpus-per-worker",
            str(per_worker),
        ]
        configs.append((f"Ray pool, {count} actor{'s' * (count > 1)}", f"{per_worker} each", flags, count))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in configs}
    for repeat in range(args.repeats):
        for index, (name, _, flags, workers) in enumerate(configs):
            runs[name].append(measure(flags, args, workers, f"{folder}/{repeat}-{index}"))  # a fresh job store
            print(f"{name}: {runs[name][-1]}", file=sys.stderr)
    ray.shutdown()
    rows = []
    for name, cpus, *_ in configs:
        batch = statistics.median(run["batch_s"] for run in runs[name])
        latency = statistics.median(run["latency_s"] for run in runs[name])
        rows.append((name, cpus, {"batch_s": batch, "per_minute": args.jobs / batch * 60, "latency_s": latency}))

    base = rows[0][2]
    print(
        f"\n{args.jobs} jobs of {args.size} px, {args.iterations} iterations, same style; {cores} cores;"
        f" median of {args.repeats}\n"
    )
    print("| workers | CPU cores | batch | jobs/minute | vs in-process | 1-iteration 32 px job, submit to done |")
    print("|---|---|---|---|---|---|")
    for name, cpus, figures in rows:
        print(
            f"| {name} | {cpus} | {figures['batch_s']:.1f} s | {figures['per_minute']:.1f} |"
            f" {figures['per_minute'] / base['per_minute']:.2f}x | {figures['latency_s']:.2f} s |"
        )
    one = next((figures for name, _, figures in rows[1:] if name.endswith(" 1 actor")), None)
    if one is not None:
        print(
            f"\nPool overhead per job: {(one['batch_s'] - base['batch_s']) / args.jobs:+.3f} s in the batch"
            f" (1 actor with all cores vs in-process), {one['latency_s'] - base['latency_s']:+.3f} s on a"
            " one-iteration job"
        )


if __name__ == "__main__":
    main()
