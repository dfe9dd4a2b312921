"""Notebook 14a.0's FID: the matrix square root and the Fréchet distance against hand-worked values, FID of a set
against itself, and the error for too few images."""
import math
import pytest, torch
from torch import nn
from mylib.core import set_seed
from mylib.xresnet import xresnet_fmnist
from mylib.fid import sqrtm_psd, frechet_distance, classifier_features, feature_stats, FID

D = torch.float64

def test_sqrtm_by_hand_and_on_random_psd():
    assert torch.allclose(sqrtm_psd(torch.diag(torch.tensor([1., 16., 25.], dtype=D))), torch.diag(torch.tensor([1., 4., 5.], dtype=D)))
    set_seed(0)
    for rank in (2, 6):
        a = torch.randn(6, rank, dtype=D)
        m = a @ a.T
        r = sqrtm_psd(m)
        assert torch.allclose(r, r.T) and torch.allclose(r @ r, m, atol=1e-9)

def test_frechet_distance_by_hand():
    mu = torch.zeros(2, dtype=D)
    assert math.isclose(frechet_distance(mu, torch.eye(2, dtype=D), mu + torch.tensor([3., 4.], dtype=D), torch.eye(2, dtype=D)), 25., abs_tol=1e-9)
    assert math.isclose(frechet_distance(mu, torch.eye(2, dtype=D), mu, 9 * torch.eye(2, dtype=D)), 8., abs_tol=1e-9)  # 2 × (1 − 3)²
    set_seed(1)
    a = torch.randn(4, 4, dtype=D); s = a @ a.T + torch.eye(4, dtype=D)
    assert abs(frechet_distance(mu.new_zeros(4), s, mu.new_zeros(4), s)) < 1e-9

def test_fid_of_a_set_against_itself_and_too_few_images():
    set_seed(2)
    model = xresnet_fmnist().eval()
    x = torch.rand(300, 1, 28, 28)
    f = classifier_features(model, x, 0.3, 0.35, bs=128)
    assert f.shape == (300, 256) and f.dtype == D
    fid = FID(model, x, 0.3, 0.35)
    assert abs(fid(x)) < 1e-6 and fid(x.flip(-1) * 0.5) > 0
    with pytest.raises(ValueError, match='more than 256 images'): feature_stats(f[:200])
