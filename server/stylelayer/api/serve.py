"""`stylelayer serve`: the API under waitress (a production WSGI server that also runs on Windows)."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import stat
import sys
from pathlib import Path
from typing import Any

from waitress import wasyncore

from .. import __version__
from ..core.engine import StyleEngine, resolve_device
from ..engine_flags import add_engine_arguments
from ..limits import DEFAULT_HOST, DEFAULT_PORT
from ..userdirs import user_data_dir
from .app import DEFAULT_CONFIG, create_app
from .http_server import create_http_server
from .job import QUEUED, RUNNING
from .job_store import JobStore, StoreError
from .lifecycle import Watcher, remove_ready, write_ready

TOKEN_ENV = "STYLELAYER_TOKEN"


def default_styles_dir() -> Path:
    """The style library in the per-user data folder (see stylelayer.userdirs)."""
    return user_data_dir() / "stylelayer" / "styles"


def default_data_dir() -> Path:
    """The job store (jobs, loss curves, results) in the per-user data folder."""
    return user_data_dir() / "stylelayer" / "jobs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_engine_arguments(parser)
    parser.add_argument(
        "--host",
        metavar="ADDRESS",
        default=DEFAULT_HOST,
        help=f"address to bind (default {DEFAULT_HOST}; any other address requires a token: ${TOKEN_ENV} or"
        " --token-file)",
    )
    parser.add_argument(
        "--port",
        metavar="PORT",
        type=int,
        default=DEFAULT_PORT,
        help="TCP port (default %(default)s; 0 picks a free one)",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        type=Path,
        help=f"require 'Authorization: Bearer TOKEN' on every request, TOKEN read from this file (or set ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"the token itself; visible to every user of this machine in the process list: prefer ${TOKEN_ENV}"
        " or --token-file",
    )
    parser.add_argument(
        "--styles-dir",
        metavar="DIR",
        type=Path,
        default=None,
        help=f"style library folder (default {default_styles_dir()})",
    )
    parser.add_argument(
        "--max-queue",
        metavar="N",
        type=int,
        default=DEFAULT_CONFIG["max_queue"],
        help="jobs allowed to wait before new ones get HTTP 429 (default %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        default=None,
        help=f"job store: jobs, loss curves and results kept across restarts (default {default_data_dir()})",
    )
    parser.add_argument(
        "--reset-jobs",
        action="store_true",
        help="start with an empty job store: the database and stored results are moved to the data folder's"
        " quarantine/ (nothing is deleted); for a damaged or lost database",
    )
    parser.add_argument(
        "--keep-results",
        metavar="N",
        type=int,
        default=DEFAULT_CONFIG["keep_results"],
        help="finished jobs (and their results) kept (default %(default)s)",
    )
    parser.add_argument(
        "--result-hours",
        metavar="HOURS",
        type=float,
        default=DEFAULT_CONFIG["result_ttl"] / 3600,
        help="hours a finished job and its result are kept (default %(default)g)",
    )
    parser.add_argument(
        "--result-mb",
        metavar="MIB",
        type=float,
        default=DEFAULT_CONFIG["result_bytes"] / 1024**2,
        help="disk for kept results in MiB; the oldest go first (default %(default)g)",
    )
    parser.add_argument(
        "--workers",
        choices=("in-process", "ray"),
        metavar="in-process|ray",
        default="in-process",
        help="where jobs run: in-process (one engine in this process, the default) or ray (Ray actors, one per GPU"
        " or per --cpus-per-worker cores, jobs in parallel; needs pip install 'stylelayer[ray]')",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="the Ray cluster for --workers ray (implies it): auto (the one 'ray start --head' runs here) or"
        " ray://HOST:PORT (default: start a local one)",
    )
    parser.add_argument(
        "--ray-workers",
        metavar="N",
        type=int,
        help="Ray actors to start (default: one per GPU of the cluster, else as many as its cores hold)",
    )
    parser.add_argument(
        "--cpus-per-worker",
        metavar="N",
        type=int,
        help="CPU cores per Ray actor (default: 4, or a smaller node's all; 1 for GPU actors)",
    )
    parser.add_argument(
        "--idle-exit",
        type=float,
        metavar="MINUTES",
        help="stop when no job is queued or running and no request came for this long (default: never); the"
        " plug-ins' managed server uses it so that no server is left running",
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(args: argparse.Namespace) -> str | None:
    """The token from --token-file, --token or $STYLELAYER_TOKEN (None: no token); ValueError when unusable."""
    if args.token_file is not None and args.token is not None:
        raise ValueError("give the token once: --token-file or --token, not both")
    if args.token_file is not None:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
            mode = args.token_file.stat().st_mode
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read --token-file {args.token_file}: {exc}") from None
        if not token:
            raise ValueError(f"--token-file {args.token_file} is empty")
        if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
            print(
                f"stylelayer serve: warning: {args.token_file} can be read by other users (chmod 600 it)",
                file=sys.stderr,
            )
        return token
    if args.token is not None:
        print(
            f"stylelayer serve: warning: --token is visible to every user of this machine (ps); use ${TOKEN_ENV}"
            " or --token-file",
            file=sys.stderr,
        )
        return args.token or None
    return os.environ.get(TOKEN_ENV) or None


def token_source(args: argparse.Namespace) -> str:
    """Where the painter finds the token, without printing it (it would end up in logs)."""
    if args.token_file is not None:
        return f"the contents of {args.token_file}"
    if args.token is not None:
        return "the value given to --token"
    return f"the value of ${TOKEN_ENV} on this machine"


def lan_addresses(bound: str) -> list[str]:
    """Addresses other machines can use to reach a server bound to `bound` (this machine's own for 0.0.0.0/::)."""
    if bound not in ("0.0.0.0", "::", ""):
        return [bound]
    found: list[str] = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this picks the interface a route would use
        found.append(probe.getsockname()[0])
    with contextlib.suppress(OSError):
        found += socket.gethostbyname_ex(socket.gethostname())[2]
    addresses = [a for a in dict.fromkeys(found) if not is_loopback(a)]
    return addresses or [socket.gethostname()]


def remote_instructions(bound: str, port: int, token_from: str) -> str:
    """What to type into the Krita or GIMP plug-in on another machine."""
    urls = ", ".join(f"http://{f'[{a}]' if ':' in a else a}:{port}" for a in lan_addresses(bound))
    return (
        f"From another machine: in the plug-in's dialog (Krita: Tools > Scripts > Style Transfer…; GIMP: Filters >"
        f" Artistic > Neural Style Transfer…) enter the server URL {urls}, paste {token_from} into its Token field"
        " and press Test connection. The port must be open in this machine's firewall."
    )


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted. Exit codes: 0 clean stop, 2 refused configuration."""
    try:
        token = read_token(args)
    except ValueError as exc:
        print(f"stylelayer serve: {exc}", file=sys.stderr)
        return 2
    if not is_loopback(args.host) and not token:
        print(
            f"stylelayer serve: refusing to listen on {args.host} without a token: anyone on the network"
            f" could use this server. Set {TOKEN_ENV} or pass --token-file FILE, or bind 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    minimums = (
        ("--max-queue", args.max_queue, 1),
        ("--keep-results", args.keep_results, 1),
        ("--result-hours", args.result_hours, 0),
        ("--result-mb", args.result_mb, 0),
        ("--idle-exit", args.idle_exit, 0),
    )
    use_ray = args.workers == "ray" or args.ray_address is not None
    minimums += (("--ray-workers", args.ray_workers, 1), ("--cpus-per-worker", args.cpus_per_worker, 1))
    for flag, value, least in minimums:
        if value is not None and not value >= least:  # also refuses nan
            print(f"stylelayer serve: {flag} must be at least {least}", file=sys.stderr)
            return 2
        if flag in ("--ray-workers", "--cpus-per-worker") and value is not None and not use_ray:
            print(f"stylelayer serve: {flag} is for --workers ray", file=sys.stderr)
            return 2
    try:
        if not use_ray:  # Ray actors check their own device, on their own nodes
            resolve_device(args.device)  # fail now, not in the first job, when the device is absent
    except ValueError as exc:
        print(f"stylelayer serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:  # before the model loads: a data folder that cannot be used is a refused configuration, not a crash
        store = JobStore(args.data_dir or default_data_dir(), reset=args.reset_jobs)
    except StoreError as exc:
        print(f"stylelayer serve: {exc}", file=sys.stderr)
        return 2
    config = {
        "token": token,
        "max_queue": args.max_queue,
        "styles_dir": str(args.styles_dir or default_styles_dir()),
        "data_dir": str(args.data_dir or default_data_dir()),
        "keep_results": args.keep_results,
        "result_ttl": args.result_hours * 3600,
        "result_bytes": int(args.result_mb * 1024**2),
        "weights": args.weights,
        "device": args.device,
        "max_memory": args.max_memory,
    }
    pool, engine = None, None
    if use_ray:  # the actors load their engines while the server already answers (engine "loading")
        try:
            pool = start_ray_pool(args)
        except Exception as exc:  # noqa: BLE001 - Ray missing, no cluster at the address, a cluster without GPUs
            print(f"stylelayer serve: could not start the Ray workers: {exc}", file=sys.stderr)
            store.close()
            return 2
    else:  # load once, before accepting jobs
        engine = StyleEngine(weights=args.weights, device=args.device, max_memory=args.max_memory)
        engine.calibrate()  # about a second: the first estimate then uses this machine's measured speed
    app = create_app(config, engine=engine, workers=pool.workers if pool is not None else None, store=store)
    try:
        server = create_http_server(app, args.host, args.port)
    except OSError as exc:  # the port is taken, the address is not this machine's, ...
        print(f"stylelayer serve: cannot listen on {args.host} port {args.port}: {exc}", file=sys.stderr)
        app.extensions["stylelayer"].queue.stop()
        if pool is not None:
            pool.close()
        return 2
    host = f"[{server.effective_host}]" if ":" in str(server.effective_host) else server.effective_host
    print(f"stylelayer server listening on http://{host}:{server.effective_port}", flush=True)
    if not is_loopback(args.host):
        print(remote_instructions(str(server.effective_host), server.effective_port, token_source(args)), flush=True)
    if pool is not None:
        print(
            f"{len(pool.workers)} Ray workers with {pool.num_cpus:g} CPU and {pool.num_gpus:g} GPU each, weights"
            f" {args.weights}; press Ctrl+C to stop",
            flush=True,
        )
    elif engine is not None:
        print(f"device {engine.device}, weights {args.weights}; press Ctrl+C to stop", flush=True)
    # Service managers and `kill` send SIGTERM, and a shell starting us in the background ignores SIGINT for us:
    # both must end the same clean way Ctrl+C does.
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, _interrupt)
    queue = app.extensions["stylelayer"].queue
    data_dir = Path(config["data_dir"])
    watcher = Watcher(
        data_dir,
        busy=lambda: any(queue.counts()[state] for state in (QUEUED, RUNNING)),
        idle_s=args.idle_exit * 60 if args.idle_exit is not None else None,
    )
    app.before_request(watcher.touch)
    url = f"http://{host}:{server.effective_port}"
    device = "ray" if pool is not None else str(engine.device if engine is not None else args.device)
    try:
        port = int(server.effective_port)
        write_ready(data_dir, {"url": url, "port": port, "device": device, "version": __version__})
        watcher.start()
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        queue.stop()  # first: ends jobs that waiting /v1/stylize threads hold on to
        close_server(server)
        if pool is not None:
            pool.close()
        remove_ready(data_dir)
    if watcher.reason is not None:
        print(f"stylelayer server stopped: {watcher.reason}", flush=True)
    return 0


def start_ray_pool(args: argparse.Namespace) -> Any:
    """The Ray actors that run the jobs (`--workers ray`): the only place the server imports Ray."""
    try:
        from . import ray_workers
    except ImportError as exc:
        raise RuntimeError(f"--workers ray needs Ray: pip install 'stylelayer[ray]' ({exc})") from None
    factory = ray_workers.style_engine_factory(args.weights, args.device, args.max_memory)
    return ray_workers.RayPool(
        factory,
        address=args.ray_address,
        workers=args.ray_workers,
        cpus_per_worker=args.cpus_per_worker,
        device=args.device,
    )


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def close_server(server: Any) -> None:
    """Stop waitress's task threads and close every socket in its map (ends its asyncore loop)."""
    server.task_dispatcher.shutdown()
    wasyncore.close_all(server._map)
