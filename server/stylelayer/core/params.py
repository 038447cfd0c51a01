"""Parameters of one style-transfer run, with validation shared by the CLI, the server and the plug-ins.

Every public entry point builds a `StyleParams` through `StyleParams.from_dict`, so a nonsense value is refused
with a message naming the field in one place, whatever transport it came from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..limits import MAX_ITERATIONS, MAX_REGIONS, MAX_SIZE, MAX_STYLES

# Gatys et al.: content on conv4_2, style on conv1_1..conv5_1 with equal weights w_l = 1/5.
CONTENT_LAYER = "conv4_2"
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
VGG_LAYERS = (
    "conv1_1",
    "conv1_2",
    "conv2_1",
    "conv2_2",
    "conv3_1",
    "conv3_2",
    "conv3_3",
    "conv3_4",
    "conv4_1",
    "conv4_2",
    "conv4_3",
    "conv4_4",
    "conv5_1",
    "conv5_2",
    "conv5_3",
    "conv5_4",
)

MODES = ("transfer", "inversion", "texture")
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "style", "varied")  # varied: the content with light seeded noise
POOLINGS = ("max", "avg")
PRECISIONS = ("auto", "fp32", "bf16")
LOSS_UNITS = ("size_invariant", "paper")  # see losses.py

MAX_SCALES = 5


class ParamError(ValueError):
    """A parameter has a wrong type or an out-of-range value; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class StyleParams:
    """What to optimise and how. Loss weights follow the paper: total = α·content + β·style + γ·tv."""

    mode: str = "transfer"
    size: int = 512  # longest side of the working image in pixels; 0 keeps the content's own size
    iterations: int = 300
    optimizer: str = "lbfgs"
    lr: float | None = None  # None: 1.0 for L-BFGS, 0.02 for Adam (pixels are in 0..1)
    content_weight: float = 1.0
    style_weight: float = 1e4  # α/β = 1e-4, within the paper's 1e-3..1e-4; chosen by eye at 512 px
    tv_weight: float = 1.0
    init: str = "content"
    seed: int | None = None  # None: a random seed, reported in the result
    style_scale: float = 1.0
    style_blend: tuple[float, ...] | None = None  # one weight per style image; None: equal
    preserve_colors: bool = False
    content_layer: str = CONTENT_LAYER
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None  # None: equal, summing to 1
    pooling: str = "avg"
    scales: int = 0  # coarse-to-fine levels, each twice the size of the one before; 0: from ~512 px up to size
    precision: str = "auto"
    output_size: tuple[int, int] | None = None  # texture mode without content: (width, height)
    loss_units: str = "size_invariant"  # the same balance at every size; "paper": the paper's raw sums
    region_weights: tuple[float, ...] | None = None  # one per region (regions.py): × style_weight; None: all 1

    # ---- derived values -------------------------------------------------------------------------------------
    @property
    def effective_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1.0 if self.optimizer == "lbfgs" else 0.02

    def precision_on(self, auto: str) -> str:
        """The precision the job runs in: the one asked for, or `auto` (what the engine picks on its device)."""
        return auto if self.precision == "auto" else self.precision

    @property
    def effective_content_weight(self) -> float:
        return 0.0 if self.mode == "texture" else self.content_weight

    @property
    def effective_style_weight(self) -> float:
        return 0.0 if self.mode == "inversion" else self.style_weight

    @property
    def layer_weights(self) -> dict[str, float]:
        if self.style_layer_weights is None:
            return {name: 1.0 / len(self.style_layers) for name in self.style_layers}
        return dict(zip(self.style_layers, self.style_layer_weights, strict=True))

    def blend_weights(self, n_styles: int) -> list[float]:
        """Normalised per-style weights; the count must match the number of style images."""
        if self.style_blend is None:
            return [1.0 / n_styles] * n_styles
        if len(self.style_blend) != n_styles:
            raise ParamError(
                "style_blend", f"has {len(self.style_blend)} weights but {n_styles} style images were given"
            )
        total = sum(self.style_blend)
        return [w / total for w in self.style_blend]

    def region_weight_list(self, n_regions: int) -> list[float]:
        """Each region's weight (a factor of style_weight); the count must match the number of regions."""
        if self.region_weights is None:
            return [1.0] * n_regions
        if len(self.region_weights) != n_regions:
            raise ParamError(
                "region_weights", f"has {len(self.region_weights)} weights but {n_regions} regions were given"
            )
        return list(self.region_weights)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples become lists); `from_dict(to_dict())` round-trips."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_json(cls, data: Any) -> StyleParams:
        """Build from a parsed JSON object with JSON's own types, as docs/openapi.yaml states them: integers are
        JSON integers, numbers JSON numbers, booleans true/false, lists arrays. The string forms `from_dict` takes
        from the command line ("64", "yes", "1,3", "64x32") are refused here."""
        if isinstance(data, Mapping):
            for f in dataclasses.fields(cls):
                if f.name in data:
                    _check_json_type(f.name, str(f.type), data[f.name])
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> StyleParams:
        return StyleParams.from_dict({**self.to_dict(), **changes})

    # ---- validation -----------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StyleParams:
        """Build from untrusted JSON-like data; raises ParamError naming the first bad field."""
        if not isinstance(data, Mapping):
            raise ParamError("params", "must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ParamError(unknown[0], f"unknown parameter (known: {', '.join(sorted(known))})")
        values = {f.name: _default(f) for f in dataclasses.fields(cls)}
        values.update(data)
        v = values
        out: dict[str, Any] = dict(
            mode=_choice(v, "mode", MODES),
            size=_int(v, "size", 0, MAX_SIZE),
            iterations=_int(v, "iterations", 1, MAX_ITERATIONS),
            optimizer=_choice(v, "optimizer", OPTIMIZERS),
            lr=None if v["lr"] is None else _float(v, "lr", 1e-6, 1e3),
            content_weight=_float(v, "content_weight", 0.0, 1e12),
            style_weight=_float(v, "style_weight", 0.0, 1e12),
            tv_weight=_float(v, "tv_weight", 0.0, 1e12),
            init=_choice(v, "init", INITS),
            seed=None if v["seed"] is None else _int(v, "seed", 0, 2**63 - 1),
            style_scale=_float(v, "style_scale", 0.05, 8.0),
            style_blend=None if v["style_blend"] is None else _floats(v, "style_blend", 0.0, 1e6, MAX_STYLES),
            preserve_colors=_bool(v, "preserve_colors"),
            content_layer=_choice(v, "content_layer", VGG_LAYERS),
            style_layers=_layers(v, "style_layers"),
            style_layer_weights=None
            if v["style_layer_weights"] is None
            else _floats(v, "style_layer_weights", 0.0, 1e6, len(VGG_LAYERS)),
            pooling=_choice(v, "pooling", POOLINGS),
            scales=_int(v, "scales", 0, MAX_SCALES),
            precision=_choice(v, "precision", PRECISIONS),
            output_size=None if v["output_size"] is None else _output_size(v, "output_size"),
            loss_units=_choice(v, "loss_units", LOSS_UNITS),
            region_weights=None if v["region_weights"] is None else _floats(v, "region_weights", 0.0, 1e6, MAX_REGIONS),
        )
        if out["style_blend"] is not None and sum(out["style_blend"]) <= 0:
            raise ParamError("style_blend", "weights must not all be zero")
        if out["style_layer_weights"] is not None:
            if len(out["style_layer_weights"]) != len(out["style_layers"]):
                raise ParamError("style_layer_weights", "needs one weight per entry of style_layers")
            if sum(out["style_layer_weights"]) <= 0:
                raise ParamError("style_layer_weights", "weights must not all be zero")
        if out["mode"] == "transfer" and out["content_weight"] == 0 and out["style_weight"] == 0:
            raise ParamError("style_weight", "content_weight and style_weight are both 0: nothing to optimise")
        return cls(**out)


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def _check_json_type(name: str, annotation: str, value: Any) -> None:
    """Refuse a JSON value whose type differs from the field's annotation (e.g. 'int | None', 'tuple[float, ...]')."""
    if value is None and "None" in annotation:
        return
    if annotation.startswith("tuple"):
        ok, kind = isinstance(value, list), "an array"
        if isinstance(value, list):
            item = annotation[len("tuple[") :].split(",")[0].split("]")[0].strip()  # 'tuple[float, ...]' -> float
            for element in value:
                _check_json_type(name, item, element)
    elif annotation.startswith("bool"):
        ok, kind = isinstance(value, bool), "true or false"
    elif annotation.startswith("int"):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "a JSON integer (no quotes, no fraction)"
    elif annotation.startswith("float"):
        ok, kind = isinstance(value, int | float) and not isinstance(value, bool), "a JSON number (no quotes)"
    else:
        ok, kind = isinstance(value, str), "a string"
    if not ok:
        raise ParamError(name, f"must be {kind}; got {value!r}")


def _choice(v: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = v[name]
    if not isinstance(value, str) or value not in choices:
        raise ParamError(name, f"must be one of {', '.join(choices)}; got {value!r}")
    return value


def _bool(v: Mapping[str, Any], name: str) -> bool:
    value = v[name]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ParamError(name, f"must be true or false; got {value!r}")


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ParamError(name, f"must be a number; got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: an int beyond float range (10**400)
        raise ParamError(name, f"must be a number; got {value!r}") from None
    if not math.isfinite(number):
        raise ParamError(name, f"must be finite; got {value!r}")
    return number


def _int(v: Mapping[str, Any], name: str, lo: int, hi: int) -> int:
    value = v[name]
    if isinstance(value, int) and not isinstance(value, bool):
        number = value  # exact: a seed above 2**53 must not pass through a float
    else:
        as_float = _number(value, name)
        if as_float != int(as_float):
            raise ParamError(name, f"must be a whole number; got {value!r}")
        number = int(as_float)
    if not lo <= number <= hi:
        raise ParamError(name, f"must be between {lo} and {hi}; got {value!r}")
    return number


def _float(v: Mapping[str, Any], name: str, lo: float, hi: float) -> float:
    number = _number(v[name], name)
    if not lo <= number <= hi:
        raise ParamError(name, f"must be between {lo:g} and {hi:g}; got {v[name]!r}")
    return number


def _floats(v: Mapping[str, Any], name: str, lo: float, hi: float, max_len: int) -> tuple[float, ...]:
    value = v[name]
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple) or not 1 <= len(value) <= max_len:
        raise ParamError(name, f"must be a list of 1 to {max_len} numbers; got {v[name]!r}")
    return tuple(_float({name: x}, name, lo, hi) for x in value)


def _layers(v: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = v[name]
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple) or not value:
        raise ParamError(name, f"must be a non-empty list of layer names; got {v[name]!r}")
    for layer in value:
        if layer not in VGG_LAYERS:
            raise ParamError(name, f"unknown layer {layer!r} (known: {', '.join(VGG_LAYERS)})")
    if len(set(value)) != len(value):
        raise ParamError(name, "lists a layer twice")
    return tuple(value)


def _output_size(v: Mapping[str, Any], name: str) -> tuple[int, int]:
    value = v[name]
    if isinstance(value, str) and "x" in value:
        value = value.split("x", 1)
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ParamError(name, f"must be [width, height] or 'WxH'; got {v[name]!r}")
    w = _int({name: value[0]}, name, 16, MAX_SIZE)
    h = _int({name: value[1]}, name, 16, MAX_SIZE)
    return (w, h)
