"""Tests for notebook 11: XResNet's shapes, parameter counts and zero-initialised blocks, the in-memory image data,
cnn_learner's recipe and its refusals, and get_preds (the learner's batch preparation, nothing left behind)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from PIL import Image

from mylib.core import set_seed
from mylib.training import Dataset, DataBunch, get_dls, accuracy
from mylib.datablock import to_byte_tensor
from mylib.imagedata import MemoryDataset, image_data, tree_splitter, byte_norm_tfm, byte_channel_stats
from mylib.schedules import one_cycle, ParamScheduler
from mylib.xresnet import *


def n_params(m): return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize('arch,expansion,layers', [(xresnet18, 1, (2, 2, 2, 2)), (xresnet34, 1, (3, 4, 6, 3)),
                                                   (xresnet50, 4, (3, 4, 6, 3))])
def test_param_count_by_formula(arch, expansion, layers):
    "Counted from the layer sizes: convs ni*nf*k*k, batchnorm 2*nf, linear ni*nf+nf."
    conv = lambda ni, nf, k=3: ni * nf * k * k
    total = conv(3, 32) + conv(32, 32) + conv(32, 64) + 2 * (32 + 32 + 64)
    ni = 64
    for i, (n, w) in enumerate(zip(layers, (64, 128, 256, 512))):
        nf = w * expansion
        for j in range(n):
            cin = ni if j == 0 else nf
            if expansion == 1: total += conv(cin, nf) + conv(nf, nf) + 4 * nf
            else: total += conv(cin, w, 1) + conv(w, w) + conv(w, nf, 1) + 2 * (w + w + nf)
            if cin != nf: total += conv(cin, nf, 1) + 2 * nf
        ni = nf
    total += ni * 1000 + 1000
    assert n_params(arch()) == total


@pytest.mark.parametrize('make,x,out', [(lambda: xresnet18(), torch.randn(2, 3, 128, 128), (2, 1000)),
                                        (lambda: xresnet34(c_in=1, c_out=7), torch.randn(2, 1, 28, 28), (2, 7)),
                                        (lambda: xresnet_fmnist(), torch.randn(2, 1, 28, 28), (2, 10)),
                                        (lambda: xresnet_fmnist(layers=(2, 1, 1, 2)), torch.randn(2, 1, 28, 28), (2, 10))])
def test_output_shapes(make, x, out):
    assert make().eval()(x).shape == out


def test_blocks_start_as_identity():
    "The last batchnorm of every block starts at gamma 0: the convolutions add nothing at first."
    set_seed(0)
    x = torch.randn(4, 32, 8, 8).relu()
    assert torch.equal(ResBlock(32, 32).eval()(x), x)
    m = xresnet18()
    zero = [blk.convs[-1][1].weight for blk in m.modules() if isinstance(blk, ResBlock)]
    assert len(zero) == 8 and all(torch.all(w == 0) for w in zero)


def test_bottleneck_shortcut_and_stride():
    blk = ResBlock(64, 256, stride=2, expansion=4).eval()
    assert [c[0].kernel_size for c in blk.convs] == [(1, 1), (3, 3), (1, 1)]
    assert blk.convs[1][0].stride == (2, 2) and isinstance(blk.pool, nn.AvgPool2d)   # ResNet-B and -D
    assert blk(torch.randn(2, 64, 7, 7)).shape == (2, 256, 4, 4)


@pytest.mark.parametrize('kwargs,match', [(dict(c_in=0), 'c_in'), (dict(c_out=2.5), 'c_out'),
                                          (dict(widths=(8, 16)), 'widths'), (dict(stem_strides=(2,)), 'stem')])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match): xresnet18(**kwargs)


def image_tree(root, n=6, size=(12, 12), mode='L'):
    "A tiny Imagenette-style tree: train/ and val/ with two classes, files named by number."
    for split in ('train', 'val'):
        for c, cls in enumerate(('ant', 'bee')):
            d = root/split/cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.new(mode, size, color=(40 * c + i) if mode == 'L' else (40 * c + i, 0, 0)).save(d/f'{c * 100 + i:05d}.png')
    return root


def test_image_data_splits_and_decodes(tmp_path):
    root = image_tree(tmp_path/'tree')
    data, test_dl = image_data(root, bs=4, valid_rows={1, 2, 101})
    assert (len(data.train_ds), len(data.valid_ds), len(test_dl.dataset)) == (9, 3, 12)
    assert data.train_ds.x.dtype == torch.uint8 and data.train_ds.x.shape[1:] == (1, 12, 12)
    assert data.c == 2 and data.c_in == 1
    assert sorted(data.valid_ds.deproc_y(data.valid_ds.y)) == ['ant', 'ant', 'bee']
    assert int(data.valid_ds.x[:, 0, 0, 0].max()) == 41             # file 00101.png: colour 40 + 1
    assert tree_splitter(root/'val'/'ant'/'00001.png', {1}) is None
    mean, std = byte_channel_stats(data.train_ds)
    xb = data.train_ds.x[:3]
    expected = (xb.float() / 255 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    assert torch.allclose(byte_norm_tfm(mean, std)(xb), expected)


def test_image_data_random_split_is_seeded(tmp_path):
    root = image_tree(tmp_path/'tree', n=20)
    a, _ = image_data(root, bs=8, p_valid=0.25, seed=3)
    b, _ = image_data(root, bs=8, p_valid=0.25, seed=3)
    assert torch.equal(a.valid_ds.x, b.valid_ds.x) and 0 < len(a.valid_ds) < 40


def test_image_data_without_test_folder(tmp_path):
    root = image_tree(tmp_path/'tree')
    with pytest.raises(ValueError, match='test_name'): image_data(root, test_name='test')


def test_memory_dataset_refuses_mixed_sizes():
    class Sizes:
        proc_y = []
        def __len__(self): return 2
        def __getitem__(self, i): return torch.zeros(3, 8 + i, 8, dtype=torch.uint8), torch.tensor(0)
    with pytest.raises(ValueError, match='ResizeFixed'): MemoryDataset(Sizes())


def small_data(n=64, c_in=1, c=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c_in, size, size, generator=g)
    y = (x.mean((1, 2, 3)) * 1e4).long() % c
    return DataBunch(*get_dls(Dataset(x[:48], y[:48]), Dataset(x[48:], y[48:]), 16), c=c, c_in=c_in)


def test_cnn_learner_builds_the_recipe():
    data = small_data()
    learn = cnn_learner(xresnet_fmnist, data, lr=1e-2, norm=byte_norm_tfm(0.5, 0.25), aug_tfm=lambda x: x.flip(-1))
    names = [type(cb).__name__ for cb in learn.cbs]
    for n in ('AvgStatsCallback', 'Recorder', 'BatchAugment', 'BatchTransformXCallback', 'AutocastCallback'): assert n in names
    assert names.count('ParamScheduler') == 2 and type(learn.loss_func).__name__ == 'LabelSmoothingCrossEntropy'
    assert learn.model[-1].out_features == 3 and learn.model[0][0].in_channels == 1
    learn.fit(1)
    assert learn.opt.param_groups[0]['mom'] > 0.9                     # momentum cycled back up at the end


def test_cnn_learner_refusals():
    with pytest.raises(ValueError, match='c_in=3'): cnn_learner(xresnet_fmnist, small_data(), c_in=3)
    data = small_data(); data.c = None
    with pytest.raises(ValueError, match='c_out'): cnn_learner(xresnet_fmnist, data)


def test_get_preds_matches_model_and_leaves_no_autocast():
    set_seed(0)
    data = small_data()
    learn = cnn_learner(xresnet_fmnist, data, bf16=False)
    learn.fit(1)
    p, t = get_preds(learn)
    learn.model.eval()
    with torch.no_grad(): expected = learn.model(data.valid_ds.x).softmax(-1)
    assert torch.allclose(p, expected, atol=1e-6) and torch.equal(t, data.valid_ds.y)
    p2, _ = get_preds(learn, tta=True)
    with torch.no_grad(): flipped = learn.model(data.valid_ds.x.flip(-1)).softmax(-1)
    assert torch.allclose(p2, (expected + flipped) / 2, atol=1e-6)
    learn_bf = cnn_learner(xresnet_fmnist, data)                      # autocast, before any fit
    pb, _ = get_preds(learn_bf)
    assert pb.dtype == torch.float32 and not torch.is_autocast_enabled('cpu')
    assert learn_bf.model.training                                     # its mode is given back


def test_one_cycle_one_schedule_per_group():
    lr_sched, mom_sched = one_cycle([1e-3, 1e-2], mom='mom')
    assert isinstance(lr_sched, ParamScheduler) and len(lr_sched.sched_funcs) == 2
    assert [round(f(0.3), 8) for f in lr_sched.sched_funcs] == [1e-3, 1e-2]
    assert abs(mom_sched.sched_funcs(0.3) - 0.85) < 1e-9


def test_get_batch_leaves_no_autocast_behind():
    from mylib.learner import get_batch
    learn = cnn_learner(xresnet_fmnist, small_data())
    learn.fit(1)
    xb, _ = get_batch(learn.data.valid_dl, learn)
    assert xb.shape == (16, 1, 16, 16) and not torch.is_autocast_enabled('cpu')


def test_byte_channel_stats_use_the_whole_class_sorted_split():
    # a class-sorted split, as an image tree gives: 12,000 dark images, then 8,000 bright ones, 3 channels
    class Sorted: pass
    g = torch.Generator().manual_seed(0)
    dark = torch.randint(0, 80, (12_000, 3, 4, 4), generator=g, dtype=torch.uint8)
    bright = torch.randint(150, 256, (8_000, 3, 4, 4), generator=g, dtype=torch.uint8)
    ds = Sorted()
    ds.x = torch.cat([dark, bright])
    mean, std = byte_channel_stats(ds)
    full = ds.x.double() / 255
    want_mean, want_std = full.mean((0, 2, 3)), full.std((0, 2, 3))
    assert (mean.double() - want_mean).abs().max() < 0.005 and (std.double() - want_std).abs().max() < 0.005
    first = full[:10_000]  # what the first images alone would say: far off
    assert (first.mean((0, 2, 3)) - want_mean).abs().min() > 0.1
    assert torch.allclose(byte_channel_stats(ds, chunk=7)[0], mean) and torch.allclose(byte_channel_stats(ds, chunk=7)[1], std)
