"Tests for mylib.hooks and mylib.conv: hooks always removed, ListContainer indexing, GeneralRelu, conv builders, devices."
import math
from functools import partial
import pytest
import torch
from torch import nn, optim
import torch.nn.functional as F

from mylib.core import set_seed
from mylib.training import Dataset, get_dls
from mylib.training import DataBunch
from mylib.callbacks import Callback
from mylib.stats import AvgStatsCallback
from mylib.runner import Holder, Runner
from mylib.hooks import *
from mylib.conv import *


def make_model():
    set_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

def n_hooks(m): return sum(len(l._forward_hooks) for l in m.modules())

def record(hook, mod, inp, outp):
    if not hasattr(hook, 'calls'): hook.calls = 0
    hook.calls += 1


def make_data(n_train=32, n_valid=16, bs=8, c=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    xt, xv = torch.randn(n_train, 784, generator=g), torch.randn(n_valid, 784, generator=g)
    yt, yv = torch.randint(0, c, (n_train,), generator=g), torch.randint(0, c, (n_valid,), generator=g)
    return DataBunch(*get_dls(Dataset(xt, yt), Dataset(xv, yv), bs), c=c)

# --- Hook and Hooks: always removed -----------------------------------------------------------------------------------

def test_hook_removed_after_normal_exit():
    m = make_model()
    with Hook(m[0], record) as h:
        assert len(m[0]._forward_hooks) == 1
        m(torch.randn(2, 4)); m(torch.randn(2, 4))
    assert h.calls == 2 and len(m[0]._forward_hooks) == 0
    m(torch.randn(2, 4))
    assert h.calls == 2


def test_hook_removed_after_exception_and_exception_unchanged():
    m = make_model()
    err = ValueError('inside')
    with pytest.raises(ValueError) as info:
        with Hook(m[0], record):
            m(torch.randn(2, 4))
            raise err
    assert info.value is err
    assert len(m[0]._forward_hooks) == 0


def test_hook_sees_module_output():
    m = make_model()
    got = {}
    def f(hook, mod, inp, outp): got['inp'], got['outp'], got['hook'] = inp[0], outp, hook
    x = torch.randn(5, 4)
    with Hook(m[1], f) as h: m(x)
    assert got['hook'] is h
    assert torch.equal(got['inp'], m[0](x)) and torch.equal(got['outp'], F.relu(m[0](x)))


def test_hook_remove_twice_is_harmless():
    m = make_model()
    h = Hook(m[0], record)
    h.remove(); h.remove()
    assert n_hooks(m) == 0


def test_hook_not_a_module():
    with pytest.raises(TypeError, match='nn.Module'): Hook('layer', record)


def test_hooks_removed_after_normal_exit():
    m = make_model()
    with Hooks(m, record) as hooks:
        assert len(hooks) == 3 and n_hooks(m) == 3
        m(torch.randn(2, 4))
    assert n_hooks(m) == 0
    assert [h.calls for h in hooks] == [1, 1, 1]


def test_hooks_removed_after_exception():
    m = make_model()
    with pytest.raises(RuntimeError):
        with Hooks(m, record):
            assert n_hooks(m) == 3
            m(torch.randn(2, 5))  # wrong input size: the first Linear raises
    assert n_hooks(m) == 0 and all(len(l._forward_hooks) == 0 for l in m)


def test_hooks_removed_after_exception_in_training():
    "An error in the middle of a Runner fit inside a `with Hooks` block leaves no hook behind."
    data = make_data()
    model = get_cnn_model(data, [4, 8])
    learn = Holder(model, optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, data)
    class Boom(Callback):
        def after_step(self):
            if self.n_iter == 1: raise KeyError('boom')
    run = Runner(cbs=[Boom(), BatchTransformXCallback(view_tfm(1, 28, 28))])
    with pytest.raises(KeyError, match='boom'):
        with Hooks(model[:2], append_stats) as hooks: run.fit(2, learn)
    assert n_hooks(model) == 0
    assert [len(h.stats[0]) for h in hooks] == [2, 2]


def test_hooks_partial_registration_is_undone():
    m = make_model()
    with pytest.raises(TypeError): Hooks([m[0], m[1], 'oops'], record)
    assert n_hooks(m) == 0


def test_hooks_del_removes_hook():
    m = make_model()
    hooks = Hooks(m, record)
    del hooks[0]
    assert len(hooks) == 2 and len(m[0]._forward_hooks) == 0 and n_hooks(m) == 2
    del hooks[0:2]
    assert len(hooks) == 0 and n_hooks(m) == 0


def test_hooks_on_list_of_modules():
    m = make_model()
    with Hooks([m[0], m[2]], record) as hooks: m(torch.randn(3, 4))
    assert [h.calls for h in hooks] == [1, 1] and n_hooks(m) == 0


def test_append_stats():
    m = make_model()
    x = torch.randn(64, 4)
    with Hooks(m, partial(append_stats, bins=10, lo=-1., hi=1., eps=0.1)) as hooks:
        m(x)
        m.eval(); m(x); m.train()  # eval batches are not recorded
    out = m[0](x)
    means, stds, hists, near = hooks[0].stats
    assert len(means) == len(stds) == len(hists) == len(near) == 1
    assert math.isclose(means[0], out.mean().item(), rel_tol=1e-5, abs_tol=1e-6)
    assert math.isclose(stds[0], out.std().item(), rel_tol=1e-5)
    assert torch.equal(hists[0], out.detach().histc(10, -1., 1.))
    assert math.isclose(near[0], (out.abs() < 0.1).float().mean().item())
    assert get_hist(hooks[0]).shape == (10, 1)

# --- ListContainer ----------------------------------------------------------------------------------------------------

def test_list_container_indexing():
    lc = ListContainer(range(10))
    assert len(lc) == 10 and list(lc) == list(range(10))
    assert lc[3] == 3 and lc[-1] == 9
    assert lc[torch.tensor(2)] == 2
    assert isinstance(lc[2:5], ListContainer) and list(lc[2:5]) == [2, 3, 4]
    assert list(lc[::-3]) == [9, 6, 3, 0]
    assert list(lc[[1, 1, 8]]) == [1, 1, 8]
    assert list(lc[torch.tensor([0, 9])]) == [0, 9]
    mask = [i % 3 == 0 for i in range(10)]
    assert list(lc[mask]) == [0, 3, 6, 9]
    assert list(lc[torch.tensor(mask)]) == [0, 3, 6, 9]
    assert list(lc[[]]) == []


def test_list_container_bad_indices():
    lc = ListContainer('abc')  # a string is one item, not three
    assert len(lc) == 1
    lc = ListContainer(list('abc'))
    with pytest.raises(IndexError, match='mask'): lc[[True, False]]
    with pytest.raises(IndexError): lc[5]
    with pytest.raises(TypeError): lc[True]
    with pytest.raises(TypeError): lc[[True, 1]]
    with pytest.raises(TypeError): lc['a']


def test_list_container_setdel_and_repr():
    lc = ListContainer([1, 2, 3])
    lc[0] = 10; del lc[1]
    assert list(lc) == [10, 3]
    assert ListContainer() == ListContainer([]) and len(ListContainer(None)) == 0
    r = repr(ListContainer(range(25)))
    assert r.startswith('ListContainer (25 items)') and r.endswith('9, ...]') and '10' not in r.split('\n')[1]
    assert repr(ListContainer([1, 2])) == 'ListContainer (2 items)\n[1, 2]'

# --- GeneralRelu ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('kw,ref', [
    ({}, F.relu),
    (dict(leak=0.1), lambda x: F.leaky_relu(x, 0.1)),
    (dict(sub=0.4), lambda x: F.relu(x) - 0.4),
    (dict(maxv=6.), F.relu6),
    (dict(leak=0.1, sub=0.4, maxv=6.), lambda x: F.leaky_relu(x, 0.1).sub(0.4).clamp_max(6.)),
])
def test_general_relu_matches_torch(kw, ref):
    x = torch.cat([torch.randn(500) * 5, torch.zeros(4)])
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = GeneralRelu(**kw)(x1), ref(x2)
    assert torch.allclose(y1, y2)
    y1.sum().backward(); y2.sum().backward()
    assert torch.allclose(x1.grad, x2.grad)


def test_general_relu_keeps_input():
    x = torch.randn(100)
    x0 = x.clone()
    GeneralRelu(leak=0.1, sub=0.4, maxv=1.)(x)
    assert torch.equal(x, x0)  # nothing done in place

# --- conv builders and init -------------------------------------------------------------------------------------------

@pytest.mark.parametrize('ks,stride,n_in,n_out', [(3, 2, 28, 14), (5, 1, 28, 28), (3, 2, 7, 4), (3, 1, 5, 5), (5, 2, 14, 7)])
def test_conv_layer_shapes(ks, stride, n_in, n_out):
    l = conv_layer(3, 6, ks=ks, stride=stride)
    assert l(torch.randn(2, 3, n_in, n_in)).shape == (2, 6, n_out, n_out)
    assert l[0].padding == (ks // 2, ks // 2) and l[0].bias is not None
    assert isinstance(l[1], GeneralRelu) and len(l) == 2


def test_conv_layer_norms():
    l = conv_layer(3, 6, bn=True, leak=0.1)
    assert isinstance(l[2], nn.BatchNorm2d) and l[2].num_features == 6 and l[0].bias is None and l[1].leak == 0.1
    class MyNorm(nn.Module):
        def __init__(self, nf): super().__init__(); self.nf = nf
        def forward(self, x): return x
    l = conv_layer(3, 6, norm=MyNorm)
    assert isinstance(l[2], MyNorm) and l[2].nf == 6 and l[0].bias is None
    l = conv_layer(3, 6, bn=True, norm=MyNorm)   # an explicit norm wins over bn
    assert isinstance(l[2], MyNorm)


def test_get_cnn_model():
    data = make_data()
    m = get_cnn_model(data, [8, 16, 32], leak=0.1, sub=0.4)
    convs = [l for l in m.modules() if isinstance(l, nn.Conv2d)]
    assert [c.in_channels for c in convs] == [1, 8, 16] and [c.out_channels for c in convs] == [8, 16, 32]
    assert convs[0].kernel_size == (5, 5) and convs[0].stride == (1, 1)
    assert all(c.kernel_size == (3, 3) and c.stride == (2, 2) for c in convs[1:])
    assert m(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    assert all(l.leak == 0.1 and l.sub == 0.4 for l in m.modules() if isinstance(l, GeneralRelu))


def test_init_cnn():
    set_seed(0)
    m = init_cnn(get_cnn_model(make_data(), [32, 64, 64]))
    for l in m.modules():
        if isinstance(l, (nn.Conv2d, nn.Linear)):
            a = 1. if isinstance(l, nn.Linear) else 0.1
            want = math.sqrt(2 / ((1 + a * a) * l.weight[0].numel()))
            assert abs(l.weight.std().item() / want - 1) < 0.2
            assert torch.equal(l.bias, torch.zeros_like(l.bias))
    m = init_cnn(get_cnn_model(make_data(), [32, 64, 64]), uniform=True)
    w = m[1][0].weight
    assert abs(w.std().item() / math.sqrt(2 / (1.01 * w[0].numel())) - 1) < 0.2
    assert w.abs().max() <= math.sqrt(6 / (1.01 * w[0].numel())) + 1e-6


def test_get_learn_run():
    data = make_data()
    learn, run = get_learn_run([4, 8], data, 0.3, cbs=[partial(BatchTransformXCallback, view_tfm(1, 28, 28)),
                                                        AvgStatsCallback([], show=False)], leak=0.1)
    assert isinstance(learn, Holder) and learn.opt.param_groups[0]['lr'] == 0.3
    assert isinstance(run.batch_transform_x, BatchTransformXCallback) and isinstance(run.avg_stats, AvgStatsCallback)
    run.fit(1, learn)
    assert math.isfinite(run.avg_stats.valid_stats.avg_stats[0])

# --- callbacks --------------------------------------------------------------------------------------------------------

def test_device_callback_cpu():
    assert DeviceCallback().device == torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    data = make_data()
    model = get_cnn_model(data, [4, 8])
    seen = []
    class Where(Callback):
        _order = 3
        def after_pred(self): seen.append((self.xb.device, self.yb.device, next(self.model.parameters()).device,
                                           tuple(self.xb.shape[1:])))
    run = Runner(cbs=[DeviceCallback('cpu'), Where(), BatchTransformXCallback(view_tfm(1, 28, 28))])
    run.fit(1, Holder(model, optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, data))
    cpu = torch.device('cpu')
    assert run.device.device == cpu and len(seen) == 4 + 1
    assert all(s == (cpu, cpu, cpu, (1, 28, 28)) for s in seen)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_device_callback_cuda():
    data = make_data()
    model = get_cnn_model(data, [4, 8])
    class Where(Callback):
        _order = 3
        def after_pred(self): self.seen = (self.xb.device.type, next(self.model.parameters()).device.type)
    run = Runner(cbs=[DeviceCallback(), Where(), BatchTransformXCallback(view_tfm(1, 28, 28))])
    run.fit(1, Holder(model, optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, data))
    assert run.where.seen == ('cuda', 'cuda')


def test_view_tfm():
    x = torch.randn(6, 784)
    assert torch.equal(view_tfm(1, 28, 28)(x), x.view(6, 1, 28, 28))
    assert view_tfm(28, 28)(x).shape == (6, 28, 28)


def test_lambda_flatten():
    x = torch.randn(3, 4, 1, 1)
    assert torch.equal(Lambda(flatten)(x), nn.Flatten()(x))
    assert 'flatten' in repr(Lambda(flatten))
