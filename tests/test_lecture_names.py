"""The names the lectures use where the library has its own: `CudaCallback`, `near`, `test_overflow`,
`lm_databunchify` and `clas_databunchify`, each checked against what it stands for."""
import types, warnings
import pytest, torch
import torch.nn.functional as F
from torch import nn
from mylib.core import near, set_seed
from mylib.training import Dataset, DataBunch, get_dls
from mylib.conv import CudaCallback, DeviceCallback
from mylib.learner import Learner
from mylib.fp16 import test_overflow, grad_overflow
from mylib.datablock import ItemList, LabeledData
from mylib.text import lm_databunchify, clas_databunchify, get_lm_dls, get_clas_dls

def test_cuda_callback_is_device_callback_on_the_gpu_or_says_it_stays_on_the_cpu():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        cb = CudaCallback()
    assert isinstance(cb, DeviceCallback)
    if torch.cuda.is_available(): assert cb.device.type == 'cuda' and not w
    else: assert cb.device.type == 'cpu' and any('no CUDA device' in str(x.message) for x in w)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    data = DataBunch(*get_dls(Dataset(x, y), Dataset(x, y), 8), c=2)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn = Learner(nn.Linear(4, 2), data, F.cross_entropy, cb_funcs=[CudaCallback])  # the lectures' way: the class
    learn.fit(1)
    assert next(learn.model.parameters()).device.type == cb.device.type

def test_near_is_test_nears_comparison():
    assert near(1., 1. + 1e-6) and near(torch.tensor([1., 2.]), [1., 2.0001])
    assert not near(torch.tensor([1., 2.]), torch.tensor([1., 2.1]))
    assert not near(torch.ones(2), torch.ones(3))  # shapes differ: not near, no broadcasting

def test_test_overflow_flags_inf_and_nan_as_grad_overflow_does():
    for bad in (float('inf'), float('-inf'), float('nan')):
        x = torch.ones(5); x[2] = bad
        assert test_overflow(x)
        p = nn.Parameter(torch.ones(5)); p.grad = x
        assert grad_overflow([p])
    assert not test_overflow(torch.randn(100) * 1e30)

def _split(n_train=30, n_valid=10):
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(2, 50, (int(k),), generator=g) for k in torch.randint(3, 12, (n_train + n_valid,), generator=g)]
    lab = lambda ds, ys: LabeledData(ItemList(ds), ItemList(ys))
    return types.SimpleNamespace(train=lab(docs[:n_train], [i % 2 for i in range(n_train)]),
                                 valid=lab(docs[n_train:], [i % 2 for i in range(n_valid)]))

def test_lm_and_clas_databunchify_are_the_loaders_on_the_two_halves():
    sd = _split()
    for ours, theirs in ((lm_databunchify(sd, 4, 5), get_lm_dls(sd.train, sd.valid, 4, 5)),
                         (clas_databunchify(sd, 4, pad_idx=1), get_clas_dls(sd.train, sd.valid, 4, pad_idx=1))):
        assert len(ours.train_dl) == len(theirs.train_dl) and len(ours.valid_dl) == len(theirs.valid_dl)
        for (xa, ya), (xb, yb) in zip(ours.valid_dl, theirs.valid_dl):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)

def test_optimizer_factory_given_parameters_says_how_to_use_it():
    from mylib.optimizers import sgd_opt, adam_opt
    from mylib.conv import get_runner
    model = nn.Linear(3, 2)
    for f in (sgd_opt, adam_opt):
        with pytest.raises(TypeError, match=rf'{f.__name__}\(lr=0.1\)\(model.parameters\(\)\)'): f(model.parameters(), lr=0.1)
    data = DataBunch(*get_dls(Dataset(torch.randn(8, 3), torch.zeros(8).long()), Dataset(torch.randn(4, 3), torch.zeros(4).long()), 4), c=2)
    with pytest.raises(TypeError, match='takes no parameters'): get_runner(model, data, opt_func=sgd_opt)
    assert sgd_opt(lr=0.1)(model.parameters()) is not None and sgd_opt(False, lr=0.1)(model.parameters()) is not None

def test_dataloader_collates_bare_tensor_samples_into_one_batch_and_refuses_other_kinds():
    from mylib.training import DataLoader, collate
    imgs = [torch.full((3, 4, 4), float(i)) for i in range(6)]   # an image list: samples without labels
    xb = next(iter(DataLoader(imgs, 4)))
    assert torch.equal(xb, torch.stack(imgs[:4]))                # one (4, 3, 4, 4) batch, not a tuple per channel
    assert torch.equal(collate([(imgs[0], 1), (imgs[1], 0)])[0], torch.stack(imgs[:2]))
    with pytest.raises(TypeError, match='samples must be tensors or tuples'): collate(['a', 'b'])

def test_a_lecture_style_stat_without_state_keys_works():
    from mylib.optimizers import Stat, StatefulOptimizer, momentum_step
    class LectureAverageGrad(Stat):   # as the lectures write it: no _state_keys
        _defaults = dict(mom=0.9)
        def init_state(self, p): return {'grad_avg': torch.zeros_like(p.data)}
        def update(self, p, state, mom, **kwargs):
            state['grad_avg'].mul_(mom).add_(p.grad.data)
            return state
    p = nn.Parameter(torch.ones(3))
    opt = StatefulOptimizer([p], momentum_step, stats=LectureAverageGrad(), lr=0.1)
    p.grad = torch.ones(3); opt.step()
    p.grad = torch.ones(3); opt.step()
    assert torch.allclose(p.data, torch.ones(3) - 0.1 * 1 - 0.1 * 1.9)  # grad_avg 1, then 0.9 + 1
