"""Notebook 14's pieces against independent oracles (F.pixel_shuffle, hand-worked PSNR/SSIM/Gram values, the
classifier's own scores for CAM), the U-Net's shapes and skip connections, and the errors bad input gets."""
import math
import numpy as np
import pytest, torch
from torch import nn
import torch.nn.functional as F
from PIL import Image
from mylib.core import set_seed
from mylib.xresnet import xresnet_fmnist
from mylib.transfer import create_body
from mylib.unet import (cam, grad_cam, MergeLayer, MergeBlock, pixel_shuffle, icnr_, PixelShuffleICNR, encoder_sizes,
                        skip_indices, Unet, crappify, psnr, ssim, gram, FeatureLoss, PadCrop)

@pytest.mark.parametrize('c,r', [(4, 2), (18, 3), (8, 2)])
def test_pixel_shuffle_matches_pytorch(c, r):
    x = torch.randn(2, c, 3, 5)
    assert torch.equal(pixel_shuffle(x, r), F.pixel_shuffle(x, r))

def test_icnr_makes_a_flat_input_flat():
    set_seed(0)
    up = PixelShuffleICNR(6, 3)
    out = up(torch.ones(1, 6, 5, 5))
    assert out.shape == (1, 3, 10, 10) and torch.allclose(out, out[:, :, :1, :1].expand_as(out))

def test_psnr_and_ssim_by_hand():
    z = torch.zeros(2, 1, 12, 12, dtype=torch.float64)
    assert torch.allclose(psnr(z, z + 0.01), torch.full((2,), 40., dtype=torch.float64))
    a, b = 0.8, 0.2  # flat images: only the luminance term is left
    assert torch.allclose(ssim(z + a, z + b), torch.full((2,), (2 * a * b + 1e-4) / (a * a + b * b + 1e-4), dtype=torch.float64))
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64)
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))
    assert (ssim(x, x + 0.1 * torch.randn_like(x)) < 1).all()

def test_gram_by_hand():
    f = torch.tensor([[[[1., 0.], [2., 1.]], [[0., 1.], [1., 1.]]]])  # 2 channels, 4 positions
    assert torch.allclose(gram(f), torch.tensor([[[6., 3.], [3., 3.]]]) / 8)

def test_cam_decomposes_the_score_and_grad_cam_matches_it_at_the_last_stage():
    set_seed(1)
    m = xresnet_fmnist().eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad(): maps, cls = cam(m, x); logits = m(x)
    assert torch.allclose(maps.mean((1, 2)) + m[-1].bias[cls], logits[torch.arange(4), cls], atol=1e-4)
    assert torch.allclose(grad_cam(m, m[-4], x, cls), F.relu(maps) / maps[0].numel(), atol=1e-5)

def test_merge_layers():
    x, y = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    assert torch.equal(MergeLayer(dense=True)(y, x), torch.cat([y, x], 1))
    assert torch.equal(MergeLayer()(x, x), 2 * x)
    blk = MergeBlock(nn.Conv2d(3, 5, 1), dense=True)
    assert blk(x).shape == (2, 8, 4, 4)

def test_unet_shapes_skips_and_residual():
    set_seed(2)
    body = create_body(xresnet_fmnist())
    assert [s[-1] for s in encoder_sizes(body, 32)] == [32, 16, 16, 8, 4, 2]
    assert skip_indices(encoder_sizes(body, 32), 32) == [0, 2, 3, 4]
    unet = Unet(body, 32)
    assert len(unet.blocks) == 4
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        nn.init.zeros_(unet.final[-1].weight); nn.init.zeros_(unet.final[-1].bias)
        assert torch.equal(unet.eval()(x), x)  # a zero correction returns the input
    padded = PadCrop(unet, 2, -1.)
    assert padded(torch.randn(3, 1, 28, 28)).shape == (3, 1, 28, 28)

def test_feature_loss_is_zero_for_equal_images_and_trains_the_input():
    set_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    fl = FeatureLoss(net, [net[1], net[2]], w_feat=2., w_gram=3.)
    x = torch.randn(2, 1, 8, 8)
    assert fl(x, x).item() == 0.
    pred = torch.randn(2, 1, 8, 8, requires_grad=True)
    pix, feat, style = fl.parts(pred, x)
    assert torch.allclose(fl(pred, x), pix + 2 * feat + 3 * style)
    fl(pred, x).backward()
    assert pred.grad.abs().sum() > 0 and all(p.grad is None for p in net.parameters())

def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match='greyscale'): crappify(Image.new('RGB', (28, 28)))
    with pytest.raises(ValueError, match='does not halve'): Unet(create_body(xresnet_fmnist()), 28)
    with pytest.raises(ValueError, match='built for'): Unet(create_body(xresnet_fmnist()), 32)(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match='multiple'): pixel_shuffle(torch.zeros(1, 6, 2, 2), 2)
    with pytest.raises(ValueError, match='smaller than'): ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))

def test_crappify_is_seeded_and_keeps_the_size():
    img = Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8), 'L')
    a, b, c = crappify(img, seed=1), crappify(img, seed=1), crappify(img, seed=2)
    assert a.size == (28, 28) and a.mode == 'L'
    assert np.array_equal(np.asarray(a), np.asarray(b)) and not np.array_equal(np.asarray(a), np.asarray(c))

def test_fashion_classifier_errors_and_label_order(tmp_path):
    from mylib.unet import fashion_classifier, fashion_labels_as_11
    from mylib.datasets import FASHION_CLASSES, FASHION_FOLDER_CLASSES
    with pytest.raises(FileNotFoundError, match='Notebook 11 writes it'): fashion_classifier(tmp_path/'none.pth')
    y = torch.arange(10)
    order = sorted(FASHION_FOLDER_CLASSES)
    assert [order[i] for i in fashion_labels_as_11(y)] == FASHION_FOLDER_CLASSES  # the same class, 11's number
    assert order[fashion_labels_as_11(torch.tensor([9]))[0]] == 'ankle_boot' and fashion_labels_as_11(torch.tensor([9])).item() == 0

def test_restoration_unet_saves_and_loads_back_exactly(tmp_path):
    from mylib.unet import restoration_unet, save_restoration_unet, load_restoration_unet, restore
    set_seed(0)
    m = restoration_unet(-0.8).eval()
    path = tmp_path/'models'/'unet.pth'
    save_restoration_unet(m, path)
    back = load_restoration_unet(path)
    x = torch.rand(3, 1, 28, 28)
    assert back.value == -0.8 and torch.equal(restore(back, x, 0.3, 0.35), restore(m, x, 0.3, 0.35))
    assert restore(m, x, 0.3, 0.35).shape == x.shape and 0 <= restore(m, x, 0.3, 0.35).min()
    with pytest.raises(FileNotFoundError, match='notebook 14 writes it'): load_restoration_unet(tmp_path/'none.pth')
    torch.save({'weights': 1}, tmp_path/'other.pth')
    with pytest.raises(ValueError, match='not a saved U-Net'): load_restoration_unet(tmp_path/'other.pth')
