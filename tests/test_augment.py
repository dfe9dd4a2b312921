"""Tests for mylib.augment: bad input to the PIL and batch transforms, extreme crop requests, modes 'L' and 'RGB',
the batch augmentation only while training."""
import numpy as np
import pytest
import torch
from PIL import Image

from mylib.augment import *
from mylib.datablock import ImageList, compose, to_byte_tensor, to_float_tensor

@pytest.fixture(params=['L', 'RGB'])
def img(request):
    a = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    return Image.fromarray(a).convert(request.param)

ITEM_TFMS = [PilRandomFlip(), PilRandomDihedral(), GeneralCrop(16), CenterCrop(16), RandomResizedCrop(16),
             PilTiltRandomCrop(16, magnitude=0.2)]

@pytest.mark.parametrize('tfm', ITEM_TFMS, ids=lambda t: type(t).__name__)
def test_item_tfms_keep_mode(tfm, img):
    torch.manual_seed(0)
    out = tfm(img)
    assert isinstance(out, Image.Image) and out.mode == img.mode
    if isinstance(tfm, GeneralCrop): assert out.size == (16, 16)

@pytest.mark.parametrize('tfm', ITEM_TFMS, ids=lambda t: type(t).__name__)
@pytest.mark.parametrize('mode', ['CMYK', 'P', 'I', 'F'])
def test_item_tfms_reject_wrong_mode(tfm, mode):
    im = Image.new('RGB', (20, 20)).convert(mode)
    with pytest.raises(ValueError, match=rf"mode '{mode}'.*make_rgb"): tfm(im)

@pytest.mark.parametrize('bad', [torch.zeros(1, 28, 28), np.zeros((28, 28), np.uint8), 'a.png'])
def test_item_tfms_reject_non_images(bad):
    with pytest.raises(TypeError, match='expected a PIL image'): PilRandomFlip()(bad)

@pytest.mark.parametrize('kw', [dict(scale=(5., 10.)), dict(ratio=(10., 20.)), dict(ratio=(0.01, 0.02)),
                                dict(scale=(1., 1.), ratio=(100., 100.))])
def test_rrc_extreme_requests_fall_back(kw, img):
    for seed in range(5):
        torch.manual_seed(seed)
        t = RandomResizedCrop(12, **kw)
        l, top, r, b = t.get_box(*img.size)
        assert 0 <= l < r <= img.size[0] and 0 <= top < b <= img.size[1]
        assert t(img).size == (12, 12)

def test_rrc_tiny_image_never_raises():
    im = Image.new('L', (1, 1))
    assert RandomResizedCrop(8)(im).size == (8, 8)

@pytest.mark.parametrize('kw', [dict(scale=(0.5, 0.1)), dict(scale=(0., 1.)), dict(ratio=(-1., 2.)), dict(ratio=(2.,))])
def test_rrc_bad_ranges(kw):
    with pytest.raises(ValueError, match='range'): RandomResizedCrop(10, **kw)

@pytest.mark.parametrize('size', [0, -3, (10, 0), (10, 5, 3), 2.5, True, 'big'])
def test_bad_sizes(size):
    with pytest.raises(ValueError, match='size must be'): GeneralCrop(size)

def test_a_one_item_size_is_a_square_as_the_lectures_process_sz_has_it():
    assert GeneralCrop((10,)).size == GeneralCrop(10).size == (10, 10)

@pytest.mark.parametrize('make', [lambda: PilRandomFlip(p=1.5), lambda: PilRandomDihedral(p=-0.1),
                                  lambda: CenterCrop(10, scale=0.5), lambda: PilTiltRandomCrop(10, magnitude=0.7)])
def test_bad_parameters(make):
    with pytest.raises(ValueError): make()

def test_crop_larger_than_image_is_padded():
    im = Image.new('L', (10, 10), 255)
    a = np.asarray(GeneralCrop(20, crop_size=20)(im))
    assert a.shape == (20, 20) and a[5:15, 5:15].min() == 255 and a[0].max() == 0

def test_non_square_size_is_height_width(img):
    assert RandomResizedCrop((10, 20))(img).size == (20, 10)

def test_np_to_float_matches_two_steps(img):
    assert torch.equal(np_to_float(img), to_float_tensor(to_byte_tensor(img)))

def test_compose_orders_pil_tfms(img):
    out = compose(img, [np_to_float, PilRandomFlip(), RandomResizedCrop(8)])
    assert out.shape == (len(img.getbands()), 8, 8) and out.dtype == torch.float32

def test_find_coeffs_identity():
    pts = [(0, 0), (0, 5), (7, 5), (7, 0)]
    np.testing.assert_allclose(find_coeffs(pts, pts), [1, 0, 0, 0, 1, 0, 0, 0], atol=1e-9)

# ------------------------------------------------------------------------------------------ batch transforms

@pytest.mark.parametrize('f', [crop_pad_flip, rand_flip, rand_affine])
@pytest.mark.parametrize('bad', [torch.zeros(4, 784), torch.zeros(1, 28, 28), np.zeros((2, 1, 28, 28))])
def test_batch_tfms_reject_wrong_shape(f, bad):
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'): f(bad)

@pytest.mark.parametrize('dtype', [torch.float32, torch.uint8])
def test_crop_pad_flip_shape_dtype_and_pixels(dtype):
    x = (torch.rand(16, 3, 9, 7) * 255).to(dtype)
    y = crop_pad_flip(x, pad=2)
    assert y.shape == x.shape and y.dtype == dtype
    assert torch.equal(crop_pad_flip(x, pad=0, p_flip=0.), x)
    assert torch.equal(crop_pad_flip(x, pad=0, p_flip=1.), x.flip(-1))

def test_crop_pad_flip_is_a_shift():
    x = torch.arange(36.).view(1, 1, 6, 6).expand(50, 1, 6, 6).contiguous()
    y = crop_pad_flip(x, pad=1, p_flip=0.)
    for o in y:  # the centre 4x4 of each output is a window of the input shifted by at most one pixel
        assert any(torch.equal(o[0, 1:5, 1:5], x[0, 0, 1 + dy:5 + dy, 1 + dx:5 + dx])
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))

def test_affine_identity_and_theta_shape():
    x = torch.rand(3, 2, 8, 11)
    eye = torch.tensor([[1., 0, 0], [0, 1, 0]]).expand(3, 2, 3)
    torch.testing.assert_close(affine_batch(x, eye), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(rand_affine(x, p=0.), x, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match='theta'): affine_batch(x, eye[:2])

def test_batch_augment_only_in_train():
    class Run: pass
    run = Run(); run.xb = torch.zeros(2, 1, 4, 4); run.in_train = False
    cb = BatchAugment(lambda x: x + 1); cb.set_runner(run)
    cb.begin_batch(); assert run.xb.sum() == 0
    run.in_train = True; cb.begin_batch(); assert run.xb.sum() == 32
    assert BatchAugment._order == 1
