"""The losses against hand-computed values and a naive Gram loop."""

import torch

from stylelayer.losses import content_loss, gram_matrix, style_layer_loss, tv_loss


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
    # N = 1 filter, M = 2 positions: F = [1, 2] -> G = 5; A = 3 -> (5-3)² / (4·1²·2²) = 4/16
    f = torch.tensor([[[[1.0, 2.0]]]])
    a = torch.tensor([[3.0]])
    assert style_layer_loss(f, a).item() == 0.25


def test_style_loss_zero_for_own_gram_and_size_normalised():
    gen = torch.Generator().manual_seed(2)
    f = torch.rand(1, 8, 6, 6, generator=gen)
    assert style_layer_loss(f, gram_matrix(f)).item() == 0.0
    # 1/(4N²M²) makes E_l independent of the number of positions for tiled (statistically equal) features.
    small, big = f, f.repeat(1, 1, 2, 2)
    target = gram_matrix(small) * 0.5
    e_small = style_layer_loss(small, target)
    e_big = style_layer_loss(big, target * 4)
    assert torch.allclose(e_small, e_big, rtol=1e-5)


def test_tv_loss_by_hand():
    img = torch.tensor([[[[0.0, 1.0], [3.0, 3.0]]]])
    # horizontal: (1-0)² + (3-3)² = 1; vertical: (3-0)² + (3-1)² = 13
    assert tv_loss(img).item() == 14.0
    assert tv_loss(torch.full((1, 3, 4, 4), 0.3)).item() == 0.0
