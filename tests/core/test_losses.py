"""The losses against hand-computed values and a naive Gram loop."""

import torch

from stylelayer.core.losses import (
    REFERENCE_PIXELS,
    content_loss,
    gram_matrix,
    pixel_scale,
    style_gradient_surrogate,
    style_layer_loss,
    style_target,
    tv_loss,
    tv_terms,
)


def test_gram_matches_naive_loop():
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(1, 5, 4, 3, generator=gen)
    n, m = 5, 12
    flat = feats.reshape(n, m)
    naive = torch.zeros(n, n)
    for i in range(n):
        for j in range(n):
            naive[i, j] = sum(flat[i, k] * flat[j, k] for k in range(m))
    assert torch.allclose(gram_matrix(feats), naive, atol=1e-5)


def test_gram_of_bf16_features_is_float32_and_close():
    feats = torch.rand(1, 16, 32, 32, generator=torch.Generator().manual_seed(3))
    exact = gram_matrix(feats.double())
    gram = gram_matrix(feats.bfloat16())
    assert gram.dtype == torch.float32
    assert torch.allclose(gram, exact, rtol=2e-2)


def test_content_loss_by_hand():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    p = torch.tensor([[[[0.0, 2.0], [1.0, 1.0]]]])
    # ½ · (1² + 0² + 2² + 3²) = 7
    assert content_loss(f, p).item() == 7.0


def test_style_layer_loss_by_hand():
    # N = 1 filter, M = 2 positions: F = [1, 2] -> G = 5; A = 3 -> (5-3)² / (4·1²·2²) = 4/16 in the paper's units
    f = torch.tensor([[[[1.0, 2.0]]]])
    a = torch.tensor([[3.0]])
    assert style_layer_loss(f, style_target(a, 1, 2, "paper")).item() == 0.25
    # Size-invariant: the style's Gram is a mean over its own M_s = 1 position: (5/2 - 3)² / 4 = 1/16
    assert style_layer_loss(f, style_target(a, 1, 2, "size_invariant")).item() == 0.0625


def test_style_loss_zero_for_own_gram_and_size_normalised():
    gen = torch.Generator().manual_seed(2)
    f = torch.rand(1, 8, 6, 6, generator=gen)
    assert style_layer_loss(f, style_target(gram_matrix(f), 36, 36, "size_invariant")).item() == 0.0
    # Means over positions make E_l independent of the number of positions for tiled (statistically equal) features.
    small, big = f, f.repeat(1, 1, 2, 2)
    target = style_target(gram_matrix(small) * 0.5, 36, 36, "size_invariant")
    assert torch.allclose(style_layer_loss(small, target), style_layer_loss(big, target), rtol=1e-5)


def test_pixel_scale_is_one_at_the_reference_and_in_paper_units():
    assert pixel_scale("size_invariant", 512, 512) == 1.0 == pixel_scale("paper", 64, 48)
    assert pixel_scale("size_invariant", 1024, 1024) == 0.25
    # Content as a mean: the same per-position error gives the same loss at 4x the pixels.
    f, p = torch.ones(1, 2, 8, 8), torch.zeros(1, 2, 8, 8)
    big_f, big_p = torch.ones(1, 2, 16, 16), torch.zeros(1, 2, 16, 16)
    small = content_loss(f, p, pixel_scale("size_invariant", 64, 64))
    big = content_loss(big_f, big_p, pixel_scale("size_invariant", 128, 128))
    assert small.item() == big.item() == 0.5 * 128 * REFERENCE_PIXELS / 4096


def test_style_gradient_surrogate_splits_the_exact_gradient():
    """Back-propagating each part of the positions with the whole Gram held fixed gives the whole gradient."""
    gen = torch.Generator().manual_seed(4)
    f = torch.rand(1, 6, 5, 7, generator=gen, dtype=torch.float64).requires_grad_(True)
    target = torch.rand(6, 6, generator=gen, dtype=torch.float64)
    style_layer_loss(f, target).backward()
    whole = f.grad.clone()
    f.grad = None
    gram, m = gram_matrix(f.detach()).double(), 35
    parts = [f[..., :2, :], f[..., 2:, :3], f[..., 2:, 3:]]
    sum(style_gradient_surrogate(part, gram, m, target) for part in parts).backward()
    assert torch.allclose(f.grad, whole, rtol=1e-5, atol=1e-9)  # gram_matrix returns float32


def test_tv_loss_by_hand():
    img = torch.tensor([[[[0.0, 1.0], [3.0, 3.0]]]])
    # horizontal: (1-0)² + (3-3)² = 1; vertical: (3-0)² + (3-1)² = 13
    assert tv_loss(img).item() == 14.0
    assert tv_loss(torch.full((1, 3, 4, 4), 0.3)).item() == 0.0


def test_tv_terms_count_each_neighbour_pair_once_over_tiles():
    img = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    whole = tv_terms(img)
    # Four tiles split at row 4 and column 6, each with one extra row/column of its neighbour where there is one.
    spans = [((0, 4), (0, 6)), ((0, 4), (6, 11)), ((4, 9), (0, 6)), ((4, 9), (6, 11))]
    parts = [tv_terms(img[..., y0:, x0:], y1 - y0, x1 - x0) for (y0, y1), (x0, x1) in spans]
    assert torch.allclose(sum(parts), whole, rtol=1e-12)
