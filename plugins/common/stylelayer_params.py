"""The run's parameters: the server's limits (copies), the presets, the strength slider, the dialog's values ->
StyleParams mapping, and the checks of the server address and the style file.

Standard library only, Python 3.8: it runs in Krita's and GIMP's own Python. `stylelayer install-plugin`
copies it from plugins/common into each plug-in's folder.
"""

from __future__ import annotations

import math
import os
import random

from stylelayer_messages import PluginError

# Copies of server/stylelayer/limits.py (this file runs in the host's Python without the stylelayer package);
# tests/protocol/test_plugin_common.py fails when one differs.
DEFAULT_SERVER_URL = "http://127.0.0.1:8765"
MAX_SIZE = 8192
MAX_ITERATIONS = 10_000
MAX_PIXELS = 50_000_000
MAX_STYLE_SIDE = 2048  # a larger style image is scaled down before it is sent
BASE_STYLE_WEIGHT = 1e4  # = StyleParams.style_weight default (a test checks): style strength 1.0 means it
MIN_STRENGTH = 0.01
MAX_STRENGTH = 100.0
STRENGTH_SLIDER = (0.1, 10.0, 100)  # the slider's readable range (log scale) and its steps; the box takes the rest
MAX_SEED = 2**31 - 1  # GIMP's seed argument is a 32-bit int

# name -> (working size, iterations): the size is the longest side the server paints at (0: the layer's own
# size, with automatic coarse-to-fine levels from about 512 px up, each finer level running half the iterations
# of the one below); the iterations are those of the coarsest level.
PRESETS = {
    "preview": (256, 60),
    "normal": (512, 200),
    "high": (1024, 500),
    "full": (0, 200),
}
PRESET_LABELS = {
    "preview": "Preview: 256 px, quick look",
    "normal": "Normal: 512 px",
    "high": "High: 1024 px, finer detail",
    "full": "Full resolution: the layer's own size",
}
DEFAULT_PRESET = "normal"  # until the server says what it runs on (default_preset)


def build_params(
    iterations: int,
    strength: float = 1.0,
    preserve_colors: bool = False,
    size: int = 512,
    seed: int | None = None,
) -> dict:
    """Map the dialog's values onto the server's StyleParams dict; refuses nonsense with PluginError."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= MAX_ITERATIONS:
        raise PluginError(f"iterations must be a whole number from 1 to {MAX_ITERATIONS}; got {iterations!r}")
    if (
        isinstance(strength, bool)
        or not isinstance(strength, (int, float))
        or not math.isfinite(strength)
        or not MIN_STRENGTH <= strength <= MAX_STRENGTH
    ):
        raise PluginError(f"style strength must be from {MIN_STRENGTH:g} to {MAX_STRENGTH:g}; got {strength!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        raise PluginError(f"working size must be 0 (full size) or up to {MAX_SIZE} pixels; got {size!r}")
    params: dict = {
        "iterations": iterations,
        "style_weight": BASE_STYLE_WEIGHT * float(strength),
        "preserve_colors": bool(preserve_colors),
        "size": size,
    }
    if seed is not None and seed > 0:  # 0, -1 or None: the server picks (with the content init, no variation)
        params["seed"] = int(seed)
        params["init"] = "varied"  # the content, jittered by the seed: another seed paints another variation
    return params


def preset_values(name: str) -> tuple:
    """(working size, iterations) of a preset."""
    try:
        return PRESETS[name]
    except KeyError:
        raise PluginError(f"unknown preset {name!r} (choose {', '.join(PRESETS)})") from None


def matching_preset(size: int, iterations: int):
    """The preset with exactly these values, or None (the painter changed them: "custom")."""
    for name, values in PRESETS.items():
        if values == (size, iterations):
            return name
    return None


def default_preset(device: str) -> str:
    """The preset a first run starts from: a quick preview on a CPU server, full resolution on a GPU."""
    return "preview" if (device or "cpu").split(":")[0] == "cpu" else "full"


def strength_to_slider(strength: float) -> int:
    """Slider position (0..steps) of a style strength on the readable log scale STRENGTH_SLIDER."""
    low, high, steps = STRENGTH_SLIDER
    value = min(high, max(low, float(strength)))
    return round(steps * math.log(value / low) / math.log(high / low))


def strength_from_slider(position: int) -> float:
    """The style strength at a slider position: 0.1 … 1 (middle) … 10, two significant digits."""
    low, high, steps = STRENGTH_SLIDER
    value = low * (high / low) ** (min(steps, max(0, position)) / steps)
    return float(f"{value:.2g}")


def new_seed(rng: random.Random | None = None) -> int:
    """A seed for a new variation (1 to MAX_SEED: 0 means "pick one" in GIMP's argument)."""
    return (rng or random.SystemRandom()).randint(1, MAX_SEED)


def check_style_file(path: str | None) -> str:
    """The style file's path, when it is a file; PluginError in the same words in Krita and GIMP otherwise."""
    path = (path or "").strip()
    if not path:
        raise PluginError("Choose a style image (a file, or one from the server's library).")
    if not os.path.isfile(path):
        raise PluginError(f"The style image {path} does not exist: choose another file.")
    return path


def check_server_url(url: str) -> str:
    """The server URL without surrounding blanks, trailing slashes or a trailing /v1 (the API's own prefix, which
    the client adds); PluginError unless http(s) with a host."""
    url = (url or "").strip()
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https") or not rest.strip("/"):
        raise PluginError(f"The server URL must look like http://host:port (e.g. {DEFAULT_SERVER_URL}); got {url!r}.")
    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url
