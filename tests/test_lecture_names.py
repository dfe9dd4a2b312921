"""The names the lectures use where the library has its own (`CudaCallback`, `near`, `test_overflow`,
`lm_databunchify`, `clas_databunchify`, `create_phases`, `cb_types`, `process_sz`, `WEIGHT_HH`, `max_workers`,
`c_out`), and the lectures' own optimizer layout with our callbacks, each checked against what it stands for."""
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

class LectureOptimizer:
    "The lectures' layout: `param_groups` lists of tensors, the hyperparameters apart in `hypers`."
    def __init__(self, params, lr):
        self.param_groups = [list(params)]
        self.hypers = [{'lr': lr, 'mom': 0.9}]
    def step(self):
        for pg, h in zip(self.param_groups, self.hypers):
            for p in pg: p.data.add_(p.grad, alpha=-h['lr'])
    def zero_grad(self):
        for pg in self.param_groups:
            for p in pg: p.grad = None

def test_recorder_and_param_scheduler_drive_an_optimizer_written_the_lectures_way():
    from mylib.stats import Recorder, hyper_groups
    from mylib.schedules import ParamScheduler, sched_lin
    from mylib.runner import Runner, Holder
    set_seed(0)
    model = nn.Linear(4, 2)
    data = DataBunch(*get_dls(Dataset(torch.randn(32, 4), torch.randint(0, 2, (32,))),
                              Dataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), 8), c=2)
    opt = LectureOptimizer(model.parameters(), 0.1)
    run = Runner(cb_funcs=[Recorder, lambda: ParamScheduler('lr', sched_lin(0.1, 0.01))])
    run.fit(2, Holder(model, opt, F.cross_entropy, data))
    lrs = run.recorder.lrs[0]
    assert len(lrs) == 8 and abs(lrs[0] - 0.1) < 1e-9 and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert hyper_groups(opt) is opt.hypers and opt.hypers[0]['lr'] == lrs[-1]
    no_hypers = LectureOptimizer(model.parameters(), 0.1)
    del no_hypers.hypers   # lists of tensors and nothing saying the learning rate
    with pytest.raises(TypeError, match='not dicts of hyperparameters'): hyper_groups(no_hypers)

def test_create_phases_cb_types_debug_callback():
    from mylib.schedules import create_phases
    from mylib.transfer import cb_types, DebugCallback
    from mylib.callbacks import ALL_CBS
    assert create_phases(0.25) == [0.25, 0.75] and len(create_phases([0.1, 0.2])) == 3
    with pytest.raises(ValueError, match='less than 1'): create_phases([0.5, 0.5])
    assert cb_types.after_batch == 'after_batch' and len(vars(cb_types)) == len(ALL_CBS) == 14
    with pytest.raises(AttributeError): cb_types.after_bach
    seen = []
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    data = DataBunch(*get_dls(Dataset(x, y), Dataset(x, y), 8), c=2)
    learn = Learner(nn.Linear(4, 2), data, F.cross_entropy, cbs=[DebugCallback(cb_types.after_loss, lambda l: seen.append(l.in_train))])
    learn.fit(1)
    assert seen == [True, True, False]   # two training batches, then one validation batch of 16

def test_process_sz_weight_hh_max_workers_and_c_out():
    from mylib.augment import process_sz, GeneralCrop
    from mylib.awd_lstm import WEIGHT_HH, WeightDropout
    from mylib.text import TokenizeProcessor
    from mylib.xresnet import xresnet18, xresnet_fmnist
    assert process_sz(5) == process_sz([5]) == (5, 5) and GeneralCrop([5, 7]).size == (5, 7)
    assert WeightDropout(nn.LSTM(3, 3, batch_first=True)).layer_names == [WEIGHT_HH] == ['weight_hh_l0']
    assert TokenizeProcessor(max_workers=1, cache=False, show_progress=False).process(['a b.'])[0][1:3] == ['a', 'b']
    assert xresnet18(c_in=1, c_out=10)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert xresnet_fmnist(c_out=5)(torch.randn(2, 1, 28, 28)).shape == (2, 5)
