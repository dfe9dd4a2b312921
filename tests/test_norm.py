"Tests for mylib.norm (batch, layer, instance, group and running batch norm) and mylib.init.lsuv_init."
import math
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from mylib.norm import BatchNorm, GroupNorm, InstanceNorm, LayerNorm, RunningBatchNorm
from mylib.init import lsuv_init
from mylib.conv import GeneralRelu, conv_layer


def _gen(seed): return torch.Generator().manual_seed(seed)

def _close(a, b, atol=1e-5, rtol=1e-4):
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.allclose(a, b, atol=atol, rtol=rtol), (a - b).abs().max()

def _same_affine(ours, theirs, g):
    with torch.no_grad():
        ours.mults.copy_(torch.rand(ours.nf, generator=g) + 0.5)
        ours.adds.copy_(torch.randn(ours.nf, generator=g))
        theirs.weight.copy_(ours.mults); theirs.bias.copy_(ours.adds)


# --- BatchNorm against nn.BatchNorm1d/2d ----------------------------------------------------------------------

@pytest.mark.parametrize('shape,torch_cls', [((16, 5, 6, 6), nn.BatchNorm2d), ((2, 3, 1, 1), nn.BatchNorm2d),
                                             ((32, 7), nn.BatchNorm1d), ((4, 5, 9), nn.BatchNorm1d)])
@pytest.mark.parametrize('mom', [0.1, 0.3])
def test_batchnorm_matches_torch_train_and_eval(shape, torch_cls, mom):
    g = _gen(sum(shape))
    nf = shape[1]
    ours, theirs = BatchNorm(nf, mom=mom), torch_cls(nf, momentum=mom)
    _same_affine(ours, theirs, g)
    for i in range(6):  # several updates of the running statistics, with drifting means and scales
        x = torch.randn(shape, generator=g) * (1 + i) + 2 * i - 3
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        y1, y2 = ours(x1), theirs(x2)
        _close(y1, y2, atol=1e-4)
        up = torch.randn(y1.shape, generator=g)
        y1.backward(up); y2.backward(up)
        _close(x1.grad, x2.grad, atol=1e-4)
        _close(ours.mults.grad, theirs.weight.grad, atol=1e-3); _close(ours.adds.grad, theirs.bias.grad, atol=1e-3)
        _close(ours.means, theirs.running_mean, atol=1e-4)
        _close(ours.vars, theirs.running_var, atol=1e-4)  # unbiased variance in the running estimate
    ours.eval(); theirs.eval()
    x = torch.randn(shape, generator=g) * 3
    _close(ours(x), theirs(x), atol=1e-4)

def test_batchnorm_eval_does_not_update_and_is_per_item():
    bn = BatchNorm(3)
    bn(torch.randn(8, 3, 4, 4) + 5)
    bn.eval()
    means, vars = bn.means.clone(), bn.vars.clone()
    x = torch.randn(6, 3, 4, 4) * 10
    out = bn(x)
    assert torch.equal(bn.means, means) and torch.equal(bn.vars, vars)
    _close(bn(x[2:3]), out[2:3])

def test_batchnorm_buffers_and_parameters():
    bn = BatchNorm(4)
    assert {n for n, _ in bn.named_parameters()} == {'mults', 'adds'}
    assert {n for n, _ in bn.named_buffers()} == {'means', 'vars'}
    assert set(bn.state_dict()) == {'mults', 'adds', 'means', 'vars'}

@pytest.mark.parametrize('cls', [BatchNorm, RunningBatchNorm, LayerNorm, InstanceNorm])
def test_wrong_channels_is_a_clear_error(cls):
    with pytest.raises(ValueError, match='expected a tensor of shape'):
        cls(4)(torch.randn(2, 3, 5, 5))

def test_batchnorm_one_value_per_channel():
    with pytest.raises(ValueError, match='more than one value per channel'):
        BatchNorm(4)(torch.randn(1, 4, 1, 1))
    bn = BatchNorm(4).eval()  # eval mode is fine: it uses the running statistics
    assert bn(torch.randn(1, 4, 1, 1)).shape == (1, 4, 1, 1)


# --- LayerNorm, InstanceNorm, GroupNorm against torch.nn.functional -------------------------------------------

def _with_affine(layer, w, b):
    with torch.no_grad(): layer.mults.copy_(w); layer.adds.copy_(b)
    return layer

@pytest.mark.parametrize('shape', [(4, 6, 5, 5), (3, 6, 7), (5, 6, 2, 3, 4)])
def test_layer_instance_group_norm_match_functional(shape):
    g = _gen(len(shape))
    x = torch.randn(shape, generator=g) * 3 + 1
    w, b = torch.randn(6, generator=g), torch.randn(6, generator=g)
    cview = (1, 6) + (1,) * (len(shape) - 2)
    _close(LayerNorm(6)(x), F.layer_norm(x, x.shape[1:]))
    _close(_with_affine(LayerNorm(6), w, b)(x), F.layer_norm(x, x.shape[1:]) * w.view(cview) + b.view(cview))
    _close(InstanceNorm(6)(x), F.instance_norm(x))
    _close(_with_affine(InstanceNorm(6), w, b)(x), F.instance_norm(x, weight=w, bias=b))
    for groups in (1, 2, 3, 6):
        _close(_with_affine(GroupNorm(groups, 6), w, b)(x), F.group_norm(x, groups, w, b))

def test_group_norm_extremes_are_layer_and_instance_norm():
    x = torch.randn(3, 8, 4, 4, generator=_gen(0))
    _close(GroupNorm(1, 8)(x), LayerNorm(8)(x))
    _close(GroupNorm(8, 8)(x), InstanceNorm(8)(x))

def test_norms_have_no_running_state_and_ignore_mode():
    x = torch.randn(4, 6, 5, 5, generator=_gen(1))
    for layer in (LayerNorm(6), InstanceNorm(6), GroupNorm(3, 6)):
        assert list(layer.buffers()) == []
        y_train = layer.train()(x)
        _close(layer.eval()(x), y_train)

def test_group_norm_bad_groups():
    with pytest.raises(ValueError, match='equal groups'): GroupNorm(4, 6)
    with pytest.raises(ValueError, match='equal groups'): GroupNorm(0, 6)

def test_instance_norm_needs_spatial_dims():
    with pytest.raises(ValueError, match='at least 3'): InstanceNorm(6)(torch.randn(8, 6))


# --- RunningBatchNorm ------------------------------------------------------------------------------------------

def test_running_batchnorm_first_batch_is_batchnorm():
    x = torch.randn(32, 4, 5, 5, generator=_gen(2)) * 3 + 2
    _close(RunningBatchNorm(4)(x), F.batch_norm(x, None, None, training=True), atol=1e-4)

def test_running_batchnorm_converges_and_eval_is_the_same_function():
    x = torch.randn(64, 3, 4, 4, generator=_gen(3)) * 2 - 1
    rbn = RunningBatchNorm(3)
    for _ in range(20): y = rbn(x)
    _close(y, F.batch_norm(x, None, None, training=True), atol=1e-4)
    rbn.eval()
    state = {k: v.clone() for k, v in rbn.state_dict().items()}
    _close(rbn(x), y, atol=1e-5)
    rbn(torch.randn(5, 3, 4, 4) * 100)
    assert all(torch.equal(state[k], v) for k, v in rbn.state_dict().items())

def test_running_batchnorm_small_batches_stay_finite_and_bounded():
    g = _gen(4)
    rbn = RunningBatchNorm(5)
    for bs in (1, 2, 2, 3, 2, 1):  # batches of one and two, with a 1x1 map: one or two values per channel
        out = rbn(torch.randn(bs, 5, 1, 1, generator=g) * 4 + 1)
        assert torch.isfinite(out).all()
        assert out.abs().max() < 50  # the variance floor keeps early outputs from exploding
    assert int(rbn.seen) == 11

def test_running_batchnorm_gradient_flows_through_current_batch():
    rbn = RunningBatchNorm(3)
    rbn(torch.randn(8, 3, 2, 2, generator=_gen(5)))
    x = torch.randn(8, 3, 2, 2, generator=_gen(6), requires_grad=True)
    rbn(x).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert rbn.mults.grad is not None and rbn.adds.grad is not None
    assert not rbn.sums.requires_grad and not rbn.sqrs.requires_grad  # history is detached

def test_running_batchnorm_eval_before_training_is_an_error():
    with pytest.raises(RuntimeError, match='train on at least one batch'):
        RunningBatchNorm(3).eval()(torch.randn(2, 3, 4, 4))

def test_running_batchnorm_batch_weight_grows_with_batch_size():
    # the weight of a new batch, mom1 = 1 - (1 - mom)/sqrt(bs - 1), shows in how far the sums move
    moved = []
    for bs in (2, 8, 64):
        rbn = RunningBatchNorm(1)
        rbn(torch.zeros(bs, 1, 2, 2))
        rbn(torch.ones(bs, 1, 2, 2))
        moved.append((rbn.sums / rbn.count).item())  # mean: share of the second (all-ones) batch
    assert moved[0] < moved[1] < moved[2]
    assert math.isclose(moved[0], 0.1 / (1 - 0.9 * 0.9) * 1, rel_tol=1e-4)  # bs 2: mom1 = 0.1, debiased

def test_running_batchnorm_variance_is_stable_with_a_large_offset():
    # mean 1000, std 1 in float32: E[x²] - mean² would lose the variance to cancellation; the centred sums must not
    g = _gen(7)
    batches = [torch.randn(bs, 3, 6, 6, generator=g, dtype=torch.float64) + 1000 + 0.05 * i  # drifting mean
               for i, bs in enumerate((32, 16, 64, 8, 32, 2, 48))]
    rbn = RunningBatchNorm(3)
    with torch.no_grad():
        for x in batches: out = rbn(x.float())
    # float64 reference: the same debiased, momentum-weighted statistics, from plain sums of x and x²
    sums = sqrs = count = torch.zeros((), dtype=torch.float64)
    for x in batches:
        mom1 = 1 - 0.9 / math.sqrt(max(x.shape[0] - 1, 1))
        sums = torch.lerp(sums, x.sum((0, 2, 3)), mom1)
        sqrs = torch.lerp(sqrs, (x * x).sum((0, 2, 3)), mom1)
        count = torch.lerp(count, torch.tensor(x[:, 0].numel(), dtype=torch.float64), mom1)
    mean_ref, var_ref = sums / count, sqrs / count - (sums / count) ** 2
    _close((rbn.sums / rbn.count).double(), mean_ref, atol=1e-3, rtol=1e-6)
    _close((rbn.sqrs / rbn.count).double(), var_ref, atol=0, rtol=1e-4)
    assert (rbn.sqrs >= 0).all()
    # in eval mode it standardizes fresh data at that offset to mean ~0, std ~1
    rbn.eval()
    y = rbn(torch.randn(256, 3, 6, 6, generator=g) + mean_ref.float().view(1, 3, 1, 1))
    assert abs(y.mean().item()) < 0.1 and abs(y.std().item() - 1) < 0.1


# --- lsuv_init -------------------------------------------------------------------------------------------------

def _cnn(nfs=(8, 16, 32), **kw):
    layers, ni = [], 1
    for i, nf in enumerate(nfs):
        layers.append(conv_layer(ni, nf, 5 if i == 0 else 3, stride=1 if i == 0 else 2, **kw)); ni = nf
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ni, 10))

def _block_stats(model, blocks, xb):
    out = []
    hs = [b.register_forward_hook(lambda m, i, o: out.append((o.mean().item(), o.std().item()))) for b in blocks]
    try:
        with torch.no_grad(): model(xb)
    finally:
        for h in hs: h.remove()
    return out

@pytest.mark.parametrize('kw', [dict(leak=0.1, sub=0.4, maxv=6.), dict(leak=0.1), dict()])
def test_lsuv_unit_std_zero_mean_per_block(kw):
    torch.manual_seed(0)
    model = _cnn(**kw)
    xb = torch.randn(64, 1, 28, 28)
    res = lsuv_init(model, model[:3], xb)
    assert len(res) == 3
    for mean, std in res: assert abs(mean) < 1e-3 and abs(std - 1) < 1e-3
    for mean, std in _block_stats(model, model[:3], xb):  # measured independently
        assert abs(mean) < 1e-3 and abs(std - 1) < 1e-3
    assert not any(len(m._forward_hooks) for m in model.modules())  # every hook removed

def test_lsuv_plain_linear_layers_via_bias():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(20, 30), nn.Linear(30, 10))
    xb = torch.randn(256, 20) * 5 + 3
    for mean, std in lsuv_init(model, list(model), xb): assert abs(mean) < 1e-3 and abs(std - 1) < 1e-3

def test_lsuv_bad_modules():
    torch.manual_seed(2)
    model = _cnn(leak=0.1, sub=0.4)
    xb = torch.randn(8, 1, 28, 28)
    with pytest.raises(ValueError, match='no layer with a weight'): lsuv_init(model, [model[3]], xb)
    with pytest.raises(ValueError, match='was not called'): lsuv_init(model, [conv_layer(1, 8, leak=0.1, sub=0.)], xb)
    with pytest.raises(ValueError, match='nor a bias'):
        lsuv_init(nn.Sequential(nn.Linear(4, 4, bias=False)), [nn.Sequential(nn.Linear(4, 4, bias=False))], torch.randn(8, 4))
    assert not any(len(m._forward_hooks) for m in model.modules())
