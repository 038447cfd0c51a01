"""Uploaded image bytes -> Pillow images, with the limits that keep a hostile upload harmless.

Only Pillow ever sees request bytes (no pickle, no paths). The header is read first so an oversize or
decompression-bomb image is refused (413) before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image

from ..core.imaging import ImageError, decode_image
from .errors import ApiError


def load_upload(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Decode one uploaded file into RGB or RGBA (EXIF orientation applied), or raise a 4xx ApiError."""
    if not data:
        raise ApiError(400, "empty_file", f"{name}: the uploaded file is empty", field=name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ApiError(413, "too_many_pixels", f"{name}: image dimensions are too large", field=name) from None
        except Exception:  # noqa: BLE001 - Pillow raises many types for non-images; none of them is the client's business
            raise ApiError(
                415,
                "not_an_image",
                f"{name}: not an image Pillow can read (send PNG, JPEG, WebP, TIFF...)",
                field=name,
            ) from None
        if width * height > max_pixels:
            raise ApiError(
                413,
                "too_many_pixels",
                f"{name}: {width}x{height} is {width * height} pixels; this server's limit is {max_pixels}",
                field=name,
            )
        try:
            return decode_image(data, name=name, max_pixels=max_pixels)
        except (ImageError, Image.DecompressionBombWarning) as exc:
            raise ApiError(400, "bad_image", str(exc), field=name) from None
