"""The calibrated cost model: peak bytes of one VGG19 pass over a number of pixels, with or without gradients."""

from __future__ import annotations

from .vgg import conv_channels, layer_stride

# Calibrated on the CPU (fp32, conv5_1, 1024x1024, peak RSS above the process before the pass): measured 2.3 KB/px
# (avg pooling) and 2.6 KB/px (max) with gradients, 0.8 KB/px without; these factors keep the estimates above that.
_BACKWARD_FACTOR = 1.5
_NO_GRAD_FACTOR = 1.6
# The model holds where oneDNN runs its direct convolutions (AVX2, AVX512). Where it falls back to im2col + GEMM
# (measured by limiting it to SSE4.1 or AVX: a pass took 1.6x the bytes, a 1.4 GB budget peaked at 1.46 GB), or
# wherever else a pass takes more, a probe says so: the engine measures one pass of PROBE_SIDE px (`pass_scale`).
PROBE_SIDE = 320
# The probe's pass peaks at 0.59-0.64x the model's estimate on a 2-core AVX512 machine (fp32, avg pooling), 1.18x
# with oneDNN limited to SSE4.1; a 1000x750 job's peak came within 3% of the probe's bytes per pixel plus its vectors in
# both. The model is kept this far above the probe: it is scaled on machines whose passes take over 1.3x ours.
PROBE_MARGIN = 1.2


def activation_bytes(pixels: int, deepest: str, precision: str, pooling: str, grad: bool, scale: float = 1.0) -> float:
    """Estimated peak bytes of one pass of VGG19 up to `deepest` over `pixels` input pixels, times `scale` (this
    machine's `pass_scale`).

    With gradients autograd keeps every ReLU output (and max-pooling's int64 indices); without, only two
    neighbouring layers live at once. bf16 autocast stores activations in 2 bytes.
    """
    size = 2 if precision == "bf16" else 4
    layers = conv_channels(deepest)  # [(name, out_channels)] up to deepest
    per_px = [channels / layer_stride(name) ** 2 for name, channels in layers]
    if not grad:
        pairs = [a + b for a, b in zip([3.0, *per_px], per_px, strict=False)]
        return scale * (_NO_GRAD_FACTOR * pixels * size * max(pairs) + pixels * 3 * 4 * 2)
    saved = sum(per_px) * size + 6 * 4  # ReLU outputs, the input and its preprocessed copy
    if pooling == "max":
        saved += sum(c / (4 * layer_stride(n) ** 2) for n, c in layers if layer_stride(n) < layer_stride(deepest)) * 8
    transient = 3 * max(per_px) * size  # gradients of the widest layer in flight during backward
    return scale * _BACKWARD_FACTOR * pixels * (saved + transient)


def pass_scale(probe_bytes: int, precision: str, pooling: str) -> float:
    """How much more than the model this machine's passes take: 1 unless the probe's pass (PROBE_SIDE px to conv5_1
    with gradients, peak bytes `probe_bytes`) came within PROBE_MARGIN of the model's estimate for it."""
    model = activation_bytes(PROBE_SIDE**2, "conv5_1", precision, pooling, grad=True)
    return max(1.0, PROBE_MARGIN * probe_bytes / model)
