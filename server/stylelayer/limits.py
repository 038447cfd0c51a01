"""Limits and defaults shared by the server, the CLI and the plug-ins: each number is written here, once.

The plug-ins run inside Krita's or GIMP's own Python and cannot import this package, so
plugins/common/stylelayer_plugin_logic.py and stylelayer_client.py keep copies of the values they need;
tests/protocol/test_plugin_common.py fails when a copy differs from this module.
"""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"  # `stylelayer serve` binds only this machine unless told otherwise
DEFAULT_PORT = 8765
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"  # where the plug-ins and the client look first

MAX_SIZE = 8192  # longest side of the working image (and of a texture's output size), in pixels: 8000x6000 canvases
MAX_ITERATIONS = 10_000  # optimiser steps a job may ask for
MAX_STYLES = 8  # style images blended in one job
MAX_REGIONS = 8  # regions of one job (masks, each with up to MAX_STYLES style images)
MAX_PIXELS = 50_000_000  # pixels of one decoded image (content, style or library upload): 8000x6000 is 48 MP
MAX_UPLOAD_BYTES = 256 * 1024**2  # one request: an 8000x6000 RGBA PNG layer is up to ~192 MB (incompressible noise)
MAX_PARAMS_BYTES = 64 * 1024  # a job's `params` form field: every parameter at its longest takes a few KB
MAX_FIELD_BYTES = 1024  # any other text field of a form (a number, a style id, a style's name)
MAX_FORM_TEXT_BYTES = 1024**2  # a text field is refused while it is read beyond this (held in memory until then)
MAX_STYLE_SIDE = 2048  # the plug-ins scale a larger style image down before they send it
