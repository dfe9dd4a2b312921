"Bad input and large-sample statistics for `mylib.init` (notebook 02b)."
import math
import pytest
import torch
from torch import nn
from torch.nn.init import _calculate_fan_in_and_fan_out

from mylib.init import calc_fan_in_out, gain, kaiming_normal_, kaiming_uniform_, xavier_normal_


@pytest.mark.parametrize('shape', [(10,), (), (0,)])
def test_kaiming_normal_rejects_fewer_than_two_dims(shape):
    with pytest.raises(ValueError, match='at least 2 dims'):
        kaiming_normal_(torch.empty(shape))


@pytest.mark.parametrize('mode', ['fan_avg', 'in', '', None])
def test_kaiming_normal_rejects_unknown_mode(mode):
    w = torch.zeros(3, 4)
    with pytest.raises(ValueError, match='mode must be'):
        kaiming_normal_(w, mode=mode)
    assert (w == 0).all()  # nothing was written


def test_kaiming_normal_rejects_unknown_nonlinearity():
    with pytest.raises(ValueError, match="unknown nonlinearity 'gelu'"):
        kaiming_normal_(torch.empty(3, 4), nonlinearity='gelu')
    with pytest.raises(ValueError):
        gain('swish')


@pytest.mark.parametrize('f', [kaiming_uniform_, xavier_normal_, calc_fan_in_out])
def test_other_inits_reject_1d(f):
    with pytest.raises(ValueError):
        f(torch.empty(5))


@pytest.mark.parametrize('shape', [(10, 20), (256, 784), (64, 32, 3, 3), (8, 4, 5), (16, 8, 3, 3, 3), (1, 1)])
def test_fans_match_torch(shape):
    w = torch.empty(shape)
    assert calc_fan_in_out(w) == _calculate_fan_in_and_fan_out(w)


@pytest.mark.parametrize('shape,kw', [
    ((1000, 1000), {}),
    ((1000, 1000), dict(nonlinearity='relu')),
    ((512, 2048), dict(mode='fan_out', nonlinearity='relu')),
    ((256, 128, 3, 3), dict(a=0.1)),
    ((128, 256, 5, 5), dict(mode='fan_out', a=0.2)),
    ((1000, 1000), dict(a=math.sqrt(5))),
    ((1000, 1000), dict(nonlinearity='tanh')),
])
def test_kaiming_normal_std_matches_torch(shape, kw):
    torch.manual_seed(0)
    ours = kaiming_normal_(torch.empty(shape), **kw)
    torch.manual_seed(1)  # an independent sample: compare distributions, not values
    theirs = nn.init.kaiming_normal_(torch.empty(shape), **kw)
    fan_in, fan_out = _calculate_fan_in_and_fan_out(ours)
    fan = fan_out if kw.get('mode') == 'fan_out' else fan_in
    expected = nn.init.calculate_gain(kw.get('nonlinearity', 'leaky_relu'), kw.get('a', 0.)) / math.sqrt(fan)
    assert ours.std().item() == pytest.approx(theirs.std().item(), rel=1e-2)
    assert ours.std().item() == pytest.approx(expected, rel=1e-2)
    assert abs(ours.mean().item()) < 4 * expected / math.sqrt(ours.numel())


def test_kaiming_normal_in_place_on_a_parameter():
    lin = nn.Linear(300, 200)
    w = lin.weight
    assert kaiming_normal_(w, nonlinearity='relu') is w
    assert w.requires_grad and w.grad_fn is None and w.is_leaf
    assert w.std().item() == pytest.approx(math.sqrt(2 / 300), rel=3e-2)


def test_kaiming_normal_same_seed_same_values_as_torch():
    torch.manual_seed(3)
    ours = kaiming_normal_(torch.empty(64, 32, 3, 3), a=0.1, mode='fan_out')
    torch.manual_seed(3)
    theirs = nn.init.kaiming_normal_(torch.empty(64, 32, 3, 3), a=0.1, mode='fan_out')
    torch.testing.assert_close(ours, theirs)


def test_kaiming_normal_empty_tensor_is_a_no_op():
    w = torch.empty(0, 5)
    assert kaiming_normal_(w) is w and w.shape == (0, 5)


def test_default_linear_init_is_kaiming_uniform_sqrt5():
    torch.manual_seed(4)
    default = nn.Linear(784, 256).weight.detach()
    torch.manual_seed(4)
    ours = kaiming_uniform_(torch.empty(256, 784), a=math.sqrt(5))
    torch.testing.assert_close(ours, default)
    assert ours.abs().max().item() <= 1 / math.sqrt(784)


@pytest.mark.parametrize('nl,a', [('linear', 0.), ('conv2d', 0.), ('sigmoid', 0.), ('tanh', 0.), ('relu', 0.),
                                  ('selu', 0.), ('leaky_relu', 0.), ('leaky_relu', 0.2), ('leaky_relu', math.sqrt(5))])
def test_gain_matches_torch(nl, a):
    assert gain(nl, a) == pytest.approx(nn.init.calculate_gain(nl, a))
