"""`stylelayer serve`: the API under waitress (a production WSGI server that also runs on Windows)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from waitress import create_server, wasyncore

from ..engine import StyleEngine, resolve_device
from ..limits import DEFAULT_HOST, DEFAULT_PORT
from ..memory import parse_size
from ..userdirs import user_data_dir
from .app import DEFAULT_CONFIG, create_app

HTTP_THREADS = 8  # polling clients and waiting /v1/stylize calls each hold one while they run


def default_styles_dir() -> Path:
    """The style library in the per-user data folder (see stylelayer.userdirs)."""
    return user_data_dir() / "stylelayer" / "styles"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default {DEFAULT_HOST}; any other address requires --token)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP port (default %(default)s; 0 picks a free one)"
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cuda", "mps", "cpu"),
        help="where the network runs (default auto: CUDA, then MPS, then CPU)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("STYLELAYER_TOKEN"),
        help="require 'Authorization: Bearer TOKEN' on every request (default $STYLELAYER_TOKEN)",
    )
    parser.add_argument("--weights", default="caffe", help="VGG19 weights: caffe, torchvision or a .pth path")
    parser.add_argument(
        "--styles-dir", type=Path, default=None, help=f"style library folder (default {default_styles_dir()})"
    )
    parser.add_argument(
        "--max-memory",
        type=_memory_size,
        default=None,
        help="memory the engine may use, e.g. 6GB: bigger levels are tiled to fit (default: 80%% of free RAM/VRAM)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_CONFIG["max_queue"],
        help="jobs allowed to wait before new ones get HTTP 429 (default %(default)s)",
    )


def _memory_size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted. Exit codes: 0 clean stop, 2 refused configuration."""
    if not is_loopback(args.host) and not args.token:
        print(
            f"stylelayer serve: refusing to listen on {args.host} without --token: anyone on the network"
            " could use this server. Pass --token SECRET (or STYLELAYER_TOKEN), or bind 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    if args.max_queue < 1:
        print("stylelayer serve: --max-queue must be at least 1", file=sys.stderr)
        return 2
    try:
        resolve_device(args.device)  # fail now, not in the first job, when the device is absent
    except ValueError as exc:
        print(f"stylelayer serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = {
        "token": args.token,
        "max_queue": args.max_queue,
        "styles_dir": str(args.styles_dir or default_styles_dir()),
        "weights": args.weights,
        "device": args.device,
        "max_memory": args.max_memory,
    }
    # Load once, before accepting jobs.
    engine = StyleEngine(weights=args.weights, device=args.device, max_memory=args.max_memory)
    app = create_app(config, engine=engine)
    server = create_server(app, host=args.host, port=args.port, threads=HTTP_THREADS)
    host = f"[{server.effective_host}]" if ":" in str(server.effective_host) else server.effective_host
    print(f"stylelayer server listening on http://{host}:{server.effective_port}", flush=True)
    print(f"device {engine.device}, weights {args.weights}; press Ctrl+C to stop", flush=True)
    # Service managers and `kill` send SIGTERM, and a shell starting us in the background ignores SIGINT for us:
    # both must end the same clean way Ctrl+C does.
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, _interrupt)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        app.extensions["stylelayer"].queue.stop()  # first: ends jobs that waiting /v1/stylize threads hold on to
        close_server(server)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def close_server(server: Any) -> None:
    """Stop waitress's task threads and close every socket in its map (ends its asyncore loop)."""
    server.task_dispatcher.shutdown()
    wasyncore.close_all(server._map)
