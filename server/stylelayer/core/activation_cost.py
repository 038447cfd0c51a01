"""The calibrated cost model: peak bytes of one VGG19 pass over a number of pixels, with or without gradients."""

from __future__ import annotations

from .vgg import conv_channels, layer_stride

# Calibrated on the CPU (fp32, conv5_1, 1024x1024, peak RSS above the process before the pass): measured 2.3 KB/px
# (avg pooling) and 2.6 KB/px (max) with gradients, 0.8 KB/px without; these factors keep the estimates above that.
_BACKWARD_FACTOR = 1.5
_NO_GRAD_FACTOR = 1.6


def activation_bytes(pixels: int, deepest: str, precision: str, pooling: str, grad: bool) -> float:
    """Estimated peak bytes of one pass of VGG19 up to `deepest` over `pixels` input pixels.

    With gradients autograd keeps every ReLU output (and max-pooling's int64 indices); without, only two
    neighbouring layers live at once. bf16 autocast stores activations in 2 bytes.
    """
    size = 2 if precision == "bf16" else 4
    layers = conv_channels(deepest)  # [(name, out_channels)] up to deepest
    per_px = [channels / layer_stride(name) ** 2 for name, channels in layers]
    if not grad:
        pairs = [a + b for a, b in zip([3.0, *per_px], per_px, strict=False)]
        return _NO_GRAD_FACTOR * pixels * size * max(pairs) + pixels * 3 * 4 * 2
    saved = sum(per_px) * size + 6 * 4  # ReLU outputs, the input and its preprocessed copy
    if pooling == "max":
        saved += sum(c / (4 * layer_stride(n) ** 2) for n, c in layers if layer_stride(n) < layer_stride(deepest)) * 8
    transient = 3 * max(per_px) * size  # gradients of the widest layer in flight during backward
    return _BACKWARD_FACTOR * pixels * (saved + transient)
