"""Image plumbing between Pillow and tensors: decoding untrusted files, alpha, colour spaces, resizing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError
from torch import Tensor

from .. import __version__
from ..limits import MAX_PIXELS
from .params import StyleParams

# YIQ (NTSC) luminance/chroma split used for colour preservation, after Gatys et al. 2016
# ("Preserving Color in Neural Artistic Style Transfer").
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


class ImageError(ValueError):
    """An input is not a usable image; the message says which and why."""


def decode_image(data: bytes | Path | str, name: str = "image", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an untrusted file into RGB or RGBA, EXIF rotation applied, refusing bombs and oversize images."""
    source = io.BytesIO(data) if isinstance(data, bytes) else Path(data)
    if isinstance(source, Path) and not source.is_file():
        raise ImageError(f"{name}: file {source} does not exist")
    try:
        with Image.open(source) as img:
            if img.width * img.height > max_pixels:
                raise ImageError(
                    f"{name}: {img.width}x{img.height} is {img.width * img.height} pixels; the limit is {max_pixels}"
                )
            img.load()
            img = ImageOps.exif_transpose(img)
            return normalize_mode(img)
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{name}: not a readable image ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data surfaces as these in Pillow
        raise ImageError(f"{name}: damaged or unsupported image data ({exc})") from None


def normalize_mode(img: Image.Image) -> Image.Image:
    """RGB, or RGBA where the image carries transparency (palette, LA, 16-bit and CMYK are converted)."""
    if img.mode in ("RGB", "RGBA"):
        return img
    has_alpha = img.mode in ("LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v * (1 / 256)).convert("L")
    return img.convert("RGBA" if has_alpha else "RGB")


def split_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """RGB part and the alpha channel (None for opaque modes), so alpha can be re-attached untouched."""
    img = normalize_mode(img)
    if img.mode == "RGBA":
        return img.convert("RGB"), img.getchannel("A")
    return img, None


def fit_longest_side(img: Image.Image, longest: int) -> Image.Image:
    """Resize so the longest side is `longest` pixels, keeping the aspect ratio (each side at least 1)."""
    scale = longest / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img if size == img.size else img.resize(size, Image.Resampling.LANCZOS)


def to_tensor(img: Image.Image, device: torch.device | str = "cpu") -> Tensor:
    """(1, 3, H, W) float32 in 0..1."""
    data = torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8)
    return (data.view(img.height, img.width, 3).permute(2, 0, 1).unsqueeze(0).float() / 255.0).to(device)


def to_image(tensor: Tensor) -> Image.Image:
    """Inverse of to_tensor, rounding to the nearest 8-bit value."""
    array = tensor.detach().squeeze(0).clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu()
    return Image.frombytes("RGB", (array.shape[1], array.shape[0]), array.contiguous().numpy().tobytes())


def rgb_to_yiq(rgb: Tensor) -> Tensor:
    return torch.einsum("ij,njhw->nihw", _RGB_TO_YIQ.to(rgb), rgb)


def yiq_to_rgb(yiq: Tensor) -> Tensor:
    return torch.einsum("ij,njhw->nihw", _YIQ_TO_RGB.to(yiq), yiq)


def luminance_image(rgb: Tensor, match: Tensor | None = None) -> Tensor:
    """Grey 3-channel image of the luminance; with `match`, shifted to match's luminance mean and spread.

    Luminance-only transfer optimises these, then puts the content's chroma back (`recolor`).
    """
    y = rgb_to_yiq(rgb)[:, :1]
    if match is not None:
        ref = rgb_to_yiq(match)[:, :1]
        y = (y - y.mean()) / (y.std() + 1e-8) * ref.std() + ref.mean()
    return y.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def recolor(luminance_rgb: Tensor, color_source: Tensor) -> Tensor:
    """Take luminance from the first image (its Y) and chroma (I, Q) from the second."""
    y = rgb_to_yiq(luminance_rgb)[:, :1]
    iq = rgb_to_yiq(color_source)[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp(0, 1)


def encode_png(image: Image.Image, params: StyleParams | None = None, seed: int | None = None) -> bytes:
    """PNG bytes; with params, the text chunks say exactly how the image was made so it can be reproduced."""
    info = None
    if params is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", f"stylelayer {__version__}")
        info.add_text("stylelayer:params", json.dumps(params.to_dict(), sort_keys=True))
        if seed is not None:
            info.add_text("stylelayer:seed", str(seed))
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info, compress_level=1)  # level 1: fast; sizes barely differ
    return out.getvalue()
