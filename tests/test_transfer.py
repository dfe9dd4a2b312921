"""Tests for notebook 11a: cutting a body, loading it from a whole network's checkpoint (and refusing another
architecture), the concat-pooling head, freezing with and without batchnorm, BnFreeze, the splitters and pets_labeler."""
import pytest
import torch
from torch import nn

from mylib.core import set_seed
from mylib.training import Dataset, DataBunch, get_dls
from mylib.learner import Learner
from mylib.optimizers import adam_opt
from mylib.schedules import one_cycle
from mylib.xresnet import xresnet_fmnist
from mylib.transfer import *


def test_body_and_head_shapes():
    body = create_body(xresnet_fmnist())
    assert not isinstance(body[-1], (nn.AdaptiveAvgPool2d, nn.Linear)) and num_features(body, 1) == 256
    head = create_head(256, 7)
    assert head.eval()(body.eval()(torch.randn(2, 1, 28, 28))).shape == (2, 7)
    with pytest.raises(TypeError, match='nn.Sequential'): create_body(nn.Linear(2, 2))


def test_concat_pool_against_reductions():
    x = torch.randn(3, 5, 4, 6)
    assert torch.allclose(AdaptiveConcatPool2d()(x).flatten(1), torch.cat([x.amax((2, 3)), x.mean((2, 3))], 1))


def test_load_body_from_learner_checkpoint(tmp_path):
    set_seed(0)
    net = xresnet_fmnist(c_out=5)
    data = DataBunch(*get_dls(Dataset(torch.rand(8, 1, 28, 28), torch.arange(8) % 5), Dataset(torch.rand(4, 1, 28, 28), torch.arange(4)), 4), c=5)
    path = Learner(net, data, nn.CrossEntropyLoss(), opt_func=adam_opt()).save(tmp_path/'m.pth', with_opt=False)
    body = load_body(create_body(xresnet_fmnist(c_out=5)), path)
    for k, v in body.state_dict().items(): assert torch.equal(v, net.state_dict()[k])
    torch.save(net.state_dict(), tmp_path/'plain.pth')                 # a plain state dict works too
    load_body(create_body(xresnet_fmnist()), tmp_path/'plain.pth')     # another head does not matter


def test_load_body_refuses_other_architectures(tmp_path):
    torch.save(xresnet_fmnist().state_dict(), tmp_path/'m.pth')
    target = create_body(xresnet_fmnist(layers=(2, 2, 2, 2)))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match='another architecture'): load_body(target, tmp_path/'m.pth')
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in before.items())   # nothing changed
    with pytest.raises(ValueError, match=r'is \(16, 1, 3, 3\) there, \(16, 3, 3, 3\) here'): load_body(create_body(xresnet_fmnist(c_in=3)), tmp_path/'m.pth')
    with pytest.raises(FileNotFoundError, match='no checkpoint'): load_body(target, tmp_path/'missing.pth')


def frozen_net(train_bn):
    return freeze_body(nn.Sequential(create_body(xresnet_fmnist()), create_head(256, 3)), train_bn)


def test_freezing_keeps_batchnorm_trainable_or_not():
    m = frozen_net(True)
    for l in m[0].modules():
        for p in l.parameters(recurse=False): assert p.requires_grad == isinstance(l, nn.BatchNorm2d)
    assert all(p.requires_grad for p in m[1].parameters())
    m = frozen_net(False)
    assert not any(p.requires_grad for p in m[0].parameters())
    assert all(p.requires_grad for p in unfreeze(m).parameters())


def train_steps(m, cbs=(), splitter=trainable_params, lrs=1e-2, n=16):
    set_seed(0)
    data = DataBunch(*get_dls(Dataset(torch.rand(n, 1, 28, 28), torch.arange(n) % 3), Dataset(torch.rand(8, 1, 28, 28), torch.arange(8) % 3), 8), c=3)
    learn = Learner(m, data, nn.CrossEntropyLoss(), opt_func=adam_opt(), lr=1e-2, splitter=splitter, cbs=list(cbs))
    learn.fit(1, cbs=one_cycle(lrs, mom='mom'))
    return learn


@pytest.mark.parametrize('train_bn', [True, False])
def test_frozen_body_does_not_move(train_bn):
    m = frozen_net(train_bn)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    train_steps(m, cbs=[] if train_bn else [BnFreeze(m[0])])
    after = m.state_dict()
    moved = lambda pred: any(not torch.equal(before[k], after[k]) for k in before if pred(k))
    assert moved(lambda k: k.startswith('1.'))
    assert not moved(lambda k: k.startswith('0.') and k.endswith('.0.weight'))            # convolutions
    assert moved(lambda k: k.startswith('0.') and 'running_mean' in k) == train_bn
    assert moved(lambda k: k.startswith('0.') and k.endswith('.1.weight')) == train_bn    # batchnorm scales


def test_discriminative_lrs_two_groups():
    m = unfreeze(frozen_net(True))
    learn = train_steps(m, splitter=body_head_splitter, lrs=[1e-4, 1e-3])
    assert len(learn.opt.param_groups) == 2
    lr_body, lr_head = [pg['lr'] for pg in learn.opt.param_groups]
    assert abs(lr_body * 10 - lr_head) < 1e-12
    with pytest.raises(ValueError, match='2 parameter groups'): train_steps(unfreeze(frozen_net(True)), splitter=body_head_splitter, lrs=[1e-4, 1e-3, 1e-2])


def test_pets_labeler():
    assert pets_labeler('x/great_pyrenees_173.jpg') == 'great_pyrenees' and pets_labeler('Bengal_9.jpg') == 'Bengal'
    with pytest.raises(ValueError, match='breed'): pets_labeler('readme.txt')
