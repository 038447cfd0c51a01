"""The three losses of Gatys et al. (CVPR 2016), written as in the paper so they can be checked by hand."""

from __future__ import annotations

from torch import Tensor


def gram_matrix(features: Tensor) -> Tensor:
    """G_ij = Σ_k F_ik F_jk for one image's (1, N, H, W) features: N filters, M = H·W positions.

    Multiplied in the features' precision (bf16 kernels accumulate in fp32, and the product is a fifth of an
    iteration's work at 512 px) and returned as float32, so the losses built on it are summed in fp32.
    """
    _, n, h, w = features.shape
    f = features.reshape(n, h * w)
    return (f @ f.t()).float()


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """L_content = ½ Σ (F − P)²."""
    return 0.5 * (features.float() - target.float()).pow(2).sum()


def style_layer_loss(features: Tensor, target_gram: Tensor) -> Tensor:
    """E_l = 1/(4 N² M²) · Σ (G − A)², with G the Gram matrix of `features` and A the style's."""
    _, n, h, w = features.shape
    m = h * w
    return (gram_matrix(features) - target_gram).pow(2).sum() / (4.0 * n * n * m * m)


def tv_loss(image: Tensor) -> Tensor:
    """Total variation: Σ of squared differences between neighbouring pixels (image in 0..1, N×C×H×W)."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).sum() + dy.pow(2).sum()
