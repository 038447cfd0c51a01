"""The engine's flags, `--device`, `--weights` and `--max-memory`, defined once for `run`, `texture` and `serve`.

One definition gives the commands the same choices, the same validation (a bad size is a usage error before any
model loads) and the same help.
"""

from __future__ import annotations

import argparse

from .core.sizes import parse_size

DEVICES = ("auto", "cuda", "mps", "cpu")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        type=device_name,
        metavar="|".join(DEVICES),
        help="where the network runs (default auto: CUDA, then MPS, then CPU)",
    )
    parser.add_argument(
        "--weights",
        default="caffe",
        metavar="WEIGHTS",
        help="VGG19 weights: caffe (default, the paper's, offline), torchvision, or a .pth file",
    )
    parser.add_argument(
        "--max-memory",
        type=_memory_size,
        default=None,
        metavar="SIZE",
        help="memory the engine may use, e.g. 6GB: larger levels are tiled to fit (default: 80%% of free RAM/VRAM)",
    )


def device_name(name: str) -> str:
    if name not in DEVICES:
        raise argparse.ArgumentTypeError(f"unknown device {name!r}: choose {', '.join(DEVICES)}")
    return name


def _memory_size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
