"""The three losses of Gatys et al. (CVPR 2016), written as in the paper so they can be checked by hand.

Two unit systems (`StyleParams.loss_units`):

* ``paper``: the paper's sums. Content ½Σ(F−P)² and total variation grow with the pixel count while the style
  loss E_l is normalised by M², so the balance of a fixed α/β shifts with the working size.
* ``size_invariant`` (default): content and total variation are means over positions, multiplied by the position
  count of a 512×512 reference image, and Gram matrices are compared as means over positions (G/M against A/M_s).
  At 512×512 the numbers equal the paper's; at any other size the same weights give the same balance.

Every style loss is E_l = 1/(4N²) · Σ(G/M − T)², where the target T is the style's Gram matrix divided by the style's
position count (size-invariant) or by the generated image's (paper: then E_l = Σ(G − A)²/(4N²M²) exactly).
"""

from __future__ import annotations

from torch import Tensor

REFERENCE_PIXELS = 512 * 512


def gram_matrix(features: Tensor) -> Tensor:
    """G_ij = Σ_k F_ik F_jk for one image's (1, N, H, W) features: N filters, M = H·W positions.

    Multiplied in the features' precision (bf16 kernels accumulate in fp32, and the product is a fifth of an
    iteration's work at 512 px) and returned as float32, so the losses built on it are summed in fp32.
    """
    _, n, h, w = features.shape
    f = features.reshape(n, h * w)
    return (f @ f.t()).float()


def positions(features: Tensor) -> int:
    """M: the number of positions of a (1, N, H, W) feature map."""
    return features.shape[-2] * features.shape[-1]


def pixel_scale(units: str, height: int, width: int) -> float:
    """Factor applied to the content and TV sums of a `height`×`width` image: 1 in the paper's units."""
    return 1.0 if units == "paper" else REFERENCE_PIXELS / (height * width)


def style_target(style_gram: Tensor, style_positions: int, image_positions: float, units: str) -> Tensor:
    """T for E_l: the style's Gram matrix as a mean over its positions, or (paper) over the generated image's (a
    region's: its mask's area)."""
    return style_gram / (image_positions if units == "paper" else style_positions)


def content_loss(features: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    """L_content = ½ Σ (F − P)², times the units' `pixel_scale`."""
    return 0.5 * scale * (features.float() - target.float()).pow(2).sum()


def style_loss_from_gram(gram: Tensor, m: Tensor | float, target: Tensor) -> Tensor:
    """E_l = 1/(4N²) · Σ (G/M − T)² from an already accumulated Gram matrix G over M positions (or a mask's area)."""
    n = gram.shape[0]
    return (gram / m - target).pow(2).sum() / (4.0 * n * n)


def style_layer_loss(features: Tensor, target: Tensor) -> Tensor:
    """E_l of one whole image's features against the target T (see `style_target`)."""
    return style_loss_from_gram(gram_matrix(features), positions(features), target)


def style_gradient_surrogate(features: Tensor, gram: Tensor, m: Tensor | float, target: Tensor) -> Tensor:
    """A loss whose gradient with respect to `features` (a part of the image's positions) equals dE_l/dF there.

    E_l depends on all positions only through G = Σ_p f_p f_pᵀ, so dE_l/df_p = (G/M − T) f_p / (N²M). With the whole
    image's G held fixed, sum((G/M − T) ⊙ G_part) / (2N²M) has exactly that gradient at the part's positions: the
    parts' gradients add up to the whole image's.
    """
    n = gram.shape[0]
    residual = (gram / m - target).detach()
    return (residual * gram_matrix(features)).sum() / (2.0 * n * n * m)


def tv_terms(image: Tensor, rows: int | None = None, cols: int | None = None) -> Tensor:
    """Σ of squared differences between each pixel of the first `rows`×`cols` and its right and lower neighbours.

    `image` may extend one pixel past that region (a tile with the next tile's first row and column), so that a
    tiled image counts every neighbour pair exactly once.
    """
    h, w = image.shape[-2:]
    rows = h if rows is None else rows
    cols = w if cols is None else cols
    dx = image[..., :rows, 1 : cols + 1] - image[..., :rows, : min(cols, w - 1)]
    dy = image[..., 1 : rows + 1, :cols] - image[..., : min(rows, h - 1), :cols]
    return dx.pow(2).sum() + dy.pow(2).sum()


def tv_loss(image: Tensor, scale: float = 1.0) -> Tensor:
    """Total variation: Σ of squared differences between neighbouring pixels, times the units' `pixel_scale`."""
    return scale * tv_terms(image)
