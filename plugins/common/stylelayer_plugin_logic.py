"""Pure logic shared by the Krita and GIMP plug-ins: no Qt, no gi, standard library only, Python 3.8 syntax.

Limits and defaults of the server's parameters, the presets, the dialog values -> StyleParams mapping, the
stdlib PNG encoder, layer naming, server URL checks, selection masks (with a feathered edge), progress and
time-estimate text, and the messages the painter reads for a failure. This file is the one source:
`stylelayer install-plugin` copies it (with stylelayer_client.py) into each plug-in's folder, where the
plug-in's own logic module re-exports `__all__`.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import struct
import zlib

__all__ = [  # what the plug-ins' own logic modules re-export (`from ... import *`)
    "ABANDON_AFTER_ENV",
    "ABANDON_AFTER_S",
    "BASE_STYLE_WEIGHT",
    "CANCELLED_MESSAGE",
    "DEFAULT_PRESET",
    "DEFAULT_SERVER_URL",
    "EDGE_FEATHER",
    "LAYER_NAME_MAX",
    "MAX_ITERATIONS",
    "MAX_PIXELS",
    "MAX_SEED",
    "MAX_SIZE",
    "MAX_STRENGTH",
    "MAX_STYLE_SIDE",
    "MIN_STRENGTH",
    "NOT_CONNECTED_YET",
    "PNG_SIGNATURE",
    "PRESETS",
    "PRESET_LABELS",
    "PluginError",
    "STRENGTH_SLIDER",
    "TOKEN_PLACEHOLDER",
    "abandon_after_s",
    "build_params",
    "check_server_url",
    "check_style_file",
    "clear_outside",
    "connection_text",
    "default_preset",
    "encode_png",
    "error_message",
    "estimate_text",
    "feather_mask",
    "format_duration",
    "insert_above",
    "is_png",
    "load_token",
    "mask_is_hard",
    "matching_preset",
    "migrate_token",
    "new_seed",
    "open_edges",
    "png_size",
    "preset_values",
    "progress_fraction",
    "progress_text",
    "save_token",
    "sentence",
    "strength_from_slider",
    "strength_to_slider",
    "style_label",
    "style_layer_name",
    "token_path",
]

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
LAYER_NAME_MAX = 64
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STRENGTH_SLIDER = (0.1, 10.0, 100)  # the slider's readable range (log scale) and its steps; the box takes the rest
EDGE_FEATHER = 6  # pixels over which a hard-edged selection fades in, inside its edge
ABANDON_AFTER_S = 60  # the server cancels a job nobody has asked about for this long (the plug-in was killed)
ABANDON_AFTER_ENV = "STYLELAYER_ABANDON_AFTER"  # overrides it (a slow network: more; tests: less)

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


CANCELLED_MESSAGE = "The style transfer was cancelled; the image is unchanged."
NOT_CONNECTED_YET = "Not connected yet: press Test connection, or Apply."  # until a check or a job says more
TOKEN_PLACEHOLDER = "remote server only"  # short: the field is narrow in both dialogs
MAX_SEED = 2**31 - 1  # GIMP's seed argument is a 32-bit int
TOKEN_FILE = "plugin-token"  # in the user's stylelayer settings folder (token_path), mode 0600


class PluginError(Exception):
    """A failure worth showing to the painter as it is."""


def sentence(text: str) -> str:
    """`text` as a sentence: a capital first letter (unless it starts with an address) and a full stop (GIMP's
    error box shows it as it is)."""
    text = text.strip()
    if not text:
        return text
    if "://" not in text.split(" ", 1)[0]:
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def error_message(exc: BaseException) -> str:
    """What the painter reads for an exception from the plug-in, the HTTP client or the host, in Krita and GIMP:
    what happened and what to do, in a sentence or two.

    The client's exceptions are recognised by class name: this module does not import the client.
    """
    if isinstance(exc, PluginError):
        return sentence(str(exc))
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    url = getattr(exc, "url", None) or "the server address"
    code = getattr(exc, "code", None)
    if "JobCancelled" in kinds:
        return CANCELLED_MESSAGE
    if "JobInterrupted" in kinds:
        return (
            f"The run was interrupted: the stylelayer server at {url} stopped while it worked on the layer. The image "
            "is unchanged. Start the server again ('stylelayer serve'), then press Apply again."
        )
    for kind, text in _CONNECTION_MESSAGES:
        if kind in kinds:
            return text.format(url=url, message=message)
    if "WrongToken" in kinds:
        what = "requires a token" if "none was sent" in message else "did not accept the token"
        return (
            f"The server at {url} {what}. Paste the token the server was started with (STYLELAYER_TOKEN or its "
            "--token-file) into the Token field."
        )
    if code in _CODE_MESSAGES:
        return _CODE_MESSAGES[code].format(message=message)
    if "JobFailed" in kinds:
        return (
            f"The server could not finish the style transfer ({message}). Try again; if it fails again, try a "
            "smaller working size and look at the server's window."
        )
    if "StylelayerError" in kinds:
        return f"The server refused the request: {message}."
    return f"Unexpected error ({type(exc).__name__}): {message}"


_CONNECTION_MESSAGES = (  # (client exception class, what the painter reads)
    (
        "ServerUnavailable",
        "Cannot reach the stylelayer server at {url}. Start it with 'stylelayer serve' on that "
        "machine, or correct the server address.",
    ),
    (
        "TimedOut",
        "The stylelayer server at {url} did not answer in time. It may be busy with a large job: try "
        "again in a moment, or look at the server's window for errors.",
    ),
    (
        "ConnectionLost",
        "The connection to {url} broke off. If the stylelayer server stopped, start it again; if "
        "the address belongs to another program, correct it.",
    ),
    (
        "NotStylelayer",
        "{url} answers, but it is not a stylelayer server. Check the address and port: the server "
        "prints its URL when it starts (usually http://127.0.0.1:8765), with nothing after the port.",
    ),
    (
        "VersionMismatch",
        "The server at {url} does not match this plug-in ({message}). Install the same stylelayer "
        "version on both sides: pip install -U stylelayer, then stylelayer install-plugin.",
    ),
)
_CODE_MESSAGES = {  # the server's error codes that need their own words
    "out_of_memory": "The server ran out of memory for this size. Choose a smaller working size or the Preview "
    "preset, or give the server more memory (--max-memory) or a GPU.",
    "engine_unavailable": "The server cannot paint right now ({message}); look at the server's window.",
    "engine_loading": "The server is still loading its neural network; try again in a few seconds.",
    "queue_full": "The server is busy with other jobs ({message}).",
    "too_large": "The layer is too large for this server ({message}). Select a smaller area, or scale the image down.",
    "too_many_pixels": "The layer is too large for this server ({message}). Select a smaller area, or scale the "
    "image down.",
    "abandoned": "The server stopped the job because the plug-in stopped asking about it ({message}).",
}


# ---- PNG ---------------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(width: int, height: int, pixels: bytes, channels: int = 4, level: int = 6) -> bytes:
    """8-bit PNG of `pixels`: rows top to bottom, `channels` bytes a pixel (1 Y, 2 YA, 3 RGB, 4 RGBA)."""
    color_types = {1: 0, 2: 4, 3: 2, 4: 6}
    if channels not in color_types:
        raise ValueError(f"channels must be 1, 2, 3 or 4; got {channels}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive; got {width}x{height}")
    stride = width * channels
    if len(pixels) != stride * height:
        raise ValueError(f"expected {stride * height} bytes for {width}x{height}x{channels}; got {len(pixels)}")
    view = memoryview(pixels)
    raw = b"".join(b"\x00" + view[y * stride : (y + 1) * stride] for y in range(height))  # filter 0 (None)
    header = struct.pack(">IIBBBBB", width, height, 8, color_types[channels], 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, level)) + _chunk(b"IEND", b"")


def is_png(data: bytes) -> bool:
    return data.startswith(PNG_SIGNATURE)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header; raises PluginError when `data` is not a PNG."""
    if len(data) < 24 or not is_png(data) or data[12:16] != b"IHDR":
        raise PluginError("the server did not send back a PNG image")
    return struct.unpack(">II", data[16:24])


# ---- parameters, names and the server URL ---------------------------------------------------------
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


def abandon_after_s(environ=None) -> int:
    """Seconds without a poll after which the server cancels a plug-in's job: $STYLELAYER_ABANDON_AFTER (at least
    5) or ABANDON_AFTER_S."""
    text = (os.environ if environ is None else environ).get(ABANDON_AFTER_ENV, "")
    try:
        return max(5, int(text))
    except ValueError:
        return ABANDON_AFTER_S


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


def style_label(style_path: str | None = None, style_name: str | None = None) -> str:
    """Human name of a style: the library's name, else the file name without extension, tidied."""
    if style_name and style_name.strip():
        text = style_name
    elif style_path:
        text = os.path.splitext(os.path.basename(style_path.rstrip("/\\")))[0]
    else:
        text = ""
    return " ".join(text.replace("_", " ").replace("-", " ").split()) or "style"


def style_layer_name(label: str, existing: set[str] | frozenset[str] = frozenset()) -> str:
    """The layer name "Style: <label>", cut to LAYER_NAME_MAX, made unique among `existing` by " #2", " #3"…"""
    base = f"Style: {label}"
    if len(base) > LAYER_NAME_MAX:
        base = base[: LAYER_NAME_MAX - 1].rstrip() + "…"
    name, n = base, 2
    while name in existing:
        name = f"{base} #{n}"
        n += 1
    return name


def insert_above(names: list[str], target: int) -> int:
    """Where a new result goes, given the names of the target's siblings bottom to top: the index of the layer
    it goes directly above. That is the target, or the topmost of the results ("Style: …") stacked right above it
    by earlier runs, so the newest result is the one the painter sees."""
    top = target
    while top + 1 < len(names) and names[top + 1].startswith("Style: "):
        top += 1
    return top


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


def connection_text(info: dict, url: str) -> str:
    """The status line after a successful connection check: which server, on what, whether a token is in use."""
    device = str(info.get("device") or "?")
    kind = "CPU" if device.split(":")[0] == "cpu" else "GPU" if device.startswith("cuda") else device
    token = ", token accepted" if info.get("auth_required") else ""
    return f"Connected to stylelayer {info.get('version', '?')} at {url} ({kind}{token})."


# ---- selection masks ------------------------------------------------------------------------------
def clear_outside(rgba: bytes, mask: bytes) -> bytes:
    """RGBA pixels with alpha 0 where the selection `mask` (one byte a pixel) is 0: the result layer is transparent
    outside the selection even with its layer mask disabled; inside, its own alpha is kept (the mask fades it)."""
    if len(mask) * 4 != len(rgba):
        raise ValueError(f"mask has {len(mask)} pixels but the image {len(rgba) // 4}")
    out = bytearray(rgba)
    alpha = out[3::4]
    out[3::4] = bytes(a if m else 0 for a, m in zip(alpha, mask))  # noqa: B905 - Python 3.8 (no strict=); lengths checked above
    return bytes(out)


def mask_is_hard(mask: bytes) -> bool:
    """True when a selection mask has only fully selected and unselected pixels (no feather of its own)."""
    return not mask.translate(None, b"\x00\xff")


def feather_mask(mask: bytes, width: int, height: int, radius: int = EDGE_FEATHER, open_edges=(False,) * 4) -> bytes:
    """A hard selection mask (0/255, one byte a pixel, rows top to bottom) faded in over `radius` pixels inside
    its edge, so the new layer blends into the picture instead of ending in a seam; outside stays 0.

    `open_edges` (left, top, right, bottom): True where the selection goes on beyond the mask (the region was cut
    there by the layer's or the canvas's edge, which is no selection edge); elsewhere beyond the mask is
    unselected. Fast in plain Python: the erosions run on the whole mask as one big integer.
    """
    if len(mask) != width * height:
        raise ValueError(f"mask has {len(mask)} bytes for {width}x{height}")
    radius = max(0, min(int(radius), min(width, height) // 4))
    if radius == 0 or not mask_is_hard(mask):
        return bytes(mask)
    pad = radius + 1
    wide = width + 2 * pad
    left, top, right, bottom = open_edges
    blank = b"\x00" * pad
    rows = []
    for y in range(height):  # padded with copies of the edge pixels where open, so only selection edges erode
        row = mask[y * width : (y + 1) * width]
        rows.append((row[:1] * pad if left else blank) + row + (row[-1:] * pad if right else blank))
    rows = [rows[0] if top else b"\x00" * wide] * pad + rows + [rows[-1] if bottom else b"\x00" * wide] * pad
    frame = b"\x00" + b"\x00".join(rows) + b"\x00"  # one 0 column between rows stops sideways wrap-around
    stride = wide + 1
    level = int.from_bytes(frame, "big")
    ones = int.from_bytes(b"\x01" * len(frame), "big")
    total = level & ones  # per byte: how many erosions the pixel survived (plus one for itself)
    for _ in range(radius - 1):
        step = 8 * stride
        level &= (level << 8) & (level >> 8) & (level << step) & (level >> step)  # 4-neighbour erosion
        total += level & ones
    counts = total.to_bytes(len(frame), "big")
    table = bytes(min(255, (255 * c + radius // 2) // radius) for c in range(256))
    out = bytearray()
    for y in range(pad, pad + height):
        start = 1 + y * stride + pad
        out += counts[start : start + width]
    return bytes(out.translate(table))


def open_edges(region: tuple, selection: tuple, canvas: tuple) -> tuple:
    """(left, top, right, bottom): True where an edge of `region` is no edge of the selection: the selection's
    bounds go on beyond it (the layer's edge cut it), or it is the canvas's edge. All three are (x, y, w, h)."""
    rx, ry, rw, rh = region
    sx, sy, sw, sh = selection
    cx, cy, cw, ch = canvas
    return (
        sx < rx or rx <= cx,
        sy < ry or ry <= cy,
        sx + sw > rx + rw or rx + rw >= cx + cw,
        sy + sh > ry + rh or ry + rh >= cy + ch,
    )


# ---- the token -----------------------------------------------------------------------------------------
def token_path(environ=None) -> str:
    """The plug-ins' token file, shared by Krita and GIMP: stylelayer/plugin-token in the user's settings folder
    (%APPDATA% on Windows, else $XDG_CONFIG_HOME or ~/.config)."""
    env = os.environ if environ is None else environ
    if os.name == "nt" and env.get("APPDATA"):
        base = env["APPDATA"]
    else:
        base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return os.path.join(base, "stylelayer", TOKEN_FILE)


def load_token(path: str | None = None) -> str:
    """The stored token ("" when there is none or it cannot be read)."""
    try:
        with open(path or token_path(), encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def save_token(token: str, path: str | None = None) -> None:
    """Store the token readable by the user only (a 0600 file in a 0700 folder, replaced whole); "" removes it.
    Not in kritarc or GIMP's settings, which other users of the machine can read."""
    path = path or token_path()
    token = (token or "").strip()
    if not token:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        return
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fresh = path + ".new"
    with contextlib.suppress(FileNotFoundError):
        os.remove(fresh)  # O_EXCL below: never write into a file someone else prepared
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    os.replace(fresh, path)


def migrate_token(old: str, path: str | None = None) -> str:
    """The token to use, given one an older version kept in the host's settings (`old`, "" if none): it moves into
    the token file unless that already holds one. The caller then clears the old place."""
    current = load_token(path)
    if (old or "").strip() and not current:
        save_token(old, path)
        return old.strip()
    return current


# ---- time ---------------------------------------------------------------------------------------------
def format_duration(seconds: float) -> str:
    """'45 s', '3 min', '1 h 20 min': what a painter reads before and while waiting."""
    seconds = max(0, int(math.ceil(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    minutes = int(round(seconds / 60))
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def estimate_text(estimate: dict) -> str:
    """One line from the server's /v1/estimate answer: the time it expects, or why the job would not fit."""
    if not isinstance(estimate, dict):
        return ""
    if estimate.get("fits") is False:
        return f"Too large for the server's memory: {estimate.get('problem') or 'choose a smaller working size'}."
    seconds = _num(estimate.get("seconds"))
    if seconds is None:
        return ""
    device = str(estimate.get("device") or "")
    where = "on the server's CPU" if device == "cpu" else f"on the server's {device.upper()}" if device else ""
    levels = estimate.get("levels") or []
    detail = ""
    if len(levels) > 1:
        last = levels[-1]
        tiled = " in tiles" if any(level.get("tiled") for level in levels) else ""
        detail = f", {len(levels)} levels up to {last.get('width')}x{last.get('height')}{tiled}"
    measured = (estimate.get("speed") or {}).get("source") == "measured"
    guess = "" if measured else " (a first guess until the server has finished a job)"
    wait, ahead = _num(estimate.get("wait_seconds")) or 0.0, estimate.get("jobs_ahead")
    queue = ""
    if isinstance(ahead, int) and not isinstance(ahead, bool) and ahead > 0:
        jobs = "1 job" if ahead == 1 else f"{ahead} jobs"
        queue = f", after {jobs} ahead of it (about {format_duration(wait)})"
        seconds += wait
    text = f"Estimated time: about {format_duration(seconds)} {where}{detail}{queue}{guess}"
    return text.replace("  ", " ") + "."


# ---- progress ------------------------------------------------------------------------------------
def _num(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _total(status: dict) -> float | None:
    total = _num(status.get("total")) or _num(status.get("iterations"))
    return total if total is not None and total > 0 else None


def progress_fraction(status: dict | None) -> float | None:
    """0..1 from a server job status: `progress` when given, else iteration / total; None when unknown."""
    if not isinstance(status, dict):
        return None
    value = _num(status.get("progress"))
    if value is not None:
        return min(1.0, max(0.0, value / 100.0 if value > 1.0 else value))
    done, total = _num(status.get("iteration")), _total(status)
    if done is not None and total:
        return min(1.0, max(0.0, done / total))
    return None


def progress_text(status: dict | None, title: str = "") -> str:
    """One status line ("Iteration 3/200, about 12 s left", "Iteration 230/350, level 3/4, tile 13/40, about
    2 min left", "Queued on the server (2 ahead)…", "Done").

    With a `title` the line reads "<title>: iteration 3/200, ..." and is just the title while nothing is known.
    """
    if not isinstance(status, dict):
        return title or "Waiting for the server…"
    state = status.get("state") or status.get("status") or ""
    state = state if isinstance(state, str) else ""
    done, total = status.get("iteration"), _total(status)
    if state == "queued":
        ahead = status.get("queue_position")
        ahead_text = f" ({ahead} ahead)" if isinstance(ahead, int) and not isinstance(ahead, bool) and ahead > 0 else ""
        text = f"queued on the server{ahead_text}…"
    elif state == "running" and done == 0:  # planning and the first level's set-up: no iteration yet
        text = "starting on the server…"
    elif isinstance(done, int) and not isinstance(done, bool) and total and (done > 0 or state == "running"):
        text = f"iteration {done}/{int(total)}"
        level, levels = status.get("level"), status.get("levels")
        if isinstance(levels, int) and isinstance(level, int) and levels > 1 and level > 0:
            text += f", level {level}/{levels}"
        tile, tiles = status.get("tile"), status.get("tiles")
        if isinstance(tiles, int) and isinstance(tile, int) and tiles > 0 and tile > 0:
            text += f", tile {tile}/{tiles}"
        eta = _num(status.get("eta_s"))
        if state == "running" and eta is not None and eta > 0:
            text += f", about {format_duration(eta)} left"
    elif state:
        text = state + ("…" if state == "running" else "")
    else:
        return title or "Working…"
    return f"{title}: {text}" if title else text[0].upper() + text[1:]
