"""Tests for mixed precision (notebook 10c): MixedPrecision's skipped steps on an injected inf (weights and optimizer
state untouched, scale halved), growth after clean steps, the same schedule as torch's GradScaler, a second fit,
clipping on unscaled gradients, bad input; AutocastCallback's context always closed, dtypes and memory format."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mylib.core import set_seed
from mylib.training import Dataset, DataBunch, get_dls
from mylib.callbacks import Callback, CancelBatchException
from mylib.learner import Learner
from mylib.optimizers import adam_opt, sgd_opt
from mylib.fp16 import *


def make_data(n_train=64, n_valid=16, bs=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_valid, 1, 8, 8, generator=g)
    y = (x.mean((1, 2, 3)) > 0).long()
    return DataBunch(*get_dls(Dataset(x[:n_train], y[:n_train]), Dataset(x[n_train:], y[n_train:]), bs), c=2)

def make_model():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.BatchNorm2d(4),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

def make_learner(opt_func=None, lr=1e-2, seed=0, **kw):
    set_seed(seed)
    return Learner(make_model(), make_data(**kw), F.cross_entropy, opt_func=opt_func or adam_opt(), lr=lr)

class InjectInf(Callback):
    "An inf in the model's first gradient at the training steps in `steps`, before MixedPrecision reads it."
    _order = 50
    def __init__(self, steps, value=float('inf')): self.steps, self.value, self.k = set(steps), value, 0
    def after_backward(self):
        if self.k in self.steps: next(self.model.parameters()).grad.view(-1)[0] = self.value
        self.k += 1

class Snapshot(Callback):
    "Copies the model, masters and optimizer state before training step `at` and after it."
    _order = 100
    def __init__(self, at): self.at, self.k = at, 0
    def _state(self):
        ps = [p for pg in self.opt.param_groups for p in pg['params']]
        return ([p.detach().clone() for p in self.model.parameters()], [p.detach().clone() for p in ps],
                [{k: (v.clone() if torch.is_tensor(v) else v) for k, v in self.opt.state[p].items()} for p in ps if p in self.opt.state],
                self.mixed_precision.loss_scale)
    def begin_batch(self):
        if self.in_train and self.k == self.at: self.before = self._state()
    def after_batch(self):
        if not self.in_train: return
        if self.k == self.at: self.after = self._state()
        self.k += 1


def test_model_to_half_keeps_batchnorm_float32():
    m = model_to_half(make_model())
    assert m[0].weight.dtype == torch.float16 and m[5].weight.dtype == torch.float16
    assert m[2].weight.dtype == torch.float32 and m[2].running_var.dtype == torch.float32
    assert m(torch.randn(2, 1, 8, 8).half()).dtype == torch.float16

@pytest.mark.parametrize('value', [float('inf'), float('nan')])
def test_injected_overflow_skips_step_untouched(value):
    learn = make_learner()
    snap = Snapshot(at=2)
    mp = MixedPrecision(init_scale=2.**10, scale_wait=100)
    learn.fit(1, cbs=[mp, InjectInf({2}, value), snap])
    (w0, m0, s0, sc0), (w1, m1, s1, sc1) = snap.before, snap.after
    assert len(s0) == len(m0) > 0  # Adam already had state for every parameter
    for a, b in zip(w0 + m0, w1 + m1): assert torch.equal(a, b)
    for a, b in zip(s0, s1):
        assert a.keys() == b.keys()
        for k in a: assert (torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k])
    assert sc1 == sc0 / 2 and mp.n_skipped == 1
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())

def test_scale_grows_after_clean_steps():
    learn = make_learner()  # 4 training steps per epoch
    mp = MixedPrecision(init_scale=2.**4, scale_wait=3)
    learn.fit(2, cbs=mp)
    assert mp.scales == [16., 16., 16., 32., 32., 32., 64., 64.] and mp.n_skipped == 0
    assert mp.loss_scale == 64.

def test_scale_capped_at_max_scale():
    mp = MixedPrecision(init_scale=8., scale_wait=1, max_scale=16.)
    make_learner().fit(1, cbs=mp)
    assert mp.scales == [8., 16., 16., 16.]

def test_same_schedule_as_torch_grad_scaler():
    steps, n = {1, 2, 6}, 4
    learn = make_learner(n_train=160)
    mp = MixedPrecision(init_scale=2.**8, scale_wait=n)
    learn.fit(1, cbs=[mp, InjectInf(steps)])
    set_seed(0); m = make_model(); opt = torch.optim.SGD(m.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler('cpu', init_scale=2.**8, growth_factor=2., backoff_factor=0.5, growth_interval=n)
    ref = []
    for k, (xb, yb) in enumerate(learn.data.train_dl):
        scaler.scale(F.cross_entropy(m(xb), yb)).backward()
        if k in steps: next(m.parameters()).grad.view(-1)[0] = float('inf')
        ref.append(scaler.get_scale()); scaler.step(opt); scaler.update(); opt.zero_grad()
    assert mp.scales == ref

def test_second_fit_and_float32_between_fits():
    learn = make_learner()
    learn.fit(1, cbs=MixedPrecision())
    assert {p.dtype for p in learn.model.parameters()} == {torch.float32}
    assert all(p.grad is None for p in learn.model.parameters())
    ps = list(learn.model.parameters())
    assert [p for pg in learn.opt.param_groups for p in pg['params']] == ps  # the optimizer is back on the model
    assert next(iter(learn.opt.state.values()))['step'] == 4
    w = [p.detach().clone() for p in ps]
    learn.fit(1, cbs=MixedPrecision())
    assert next(iter(learn.opt.state.values()))['step'] == 8
    assert any(not torch.equal(a, b) for a, b in zip(w, learn.model.parameters()))
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())

def test_one_step_close_to_float32():
    def run(cbs):
        learn = make_learner(opt_func=sgd_opt(), lr=0.5, n_train=16)
        w = [p.detach().clone() for p in learn.model.parameters()]
        learn.fit(1, cbs=cbs)
        return torch.cat([(p.detach() - a).flatten() for p, a in zip(learn.model.parameters(), w)])
    u32, u16 = run([]), run([MixedPrecision(init_scale=2.**8)])
    assert ((u16 - u32).norm() / u32.norm()) < 0.05

def test_clipping_acts_on_unscaled_gradients():
    class Norm(Callback):
        _order = 100
        def after_backward(self):
            self.norm = torch.cat([p.grad.flatten() for pg in self.opt.param_groups for p in pg['params']]).norm().item()
    def run(clip):
        n = Norm(); make_learner(n_train=16, opt_func=sgd_opt()).fit(1, cbs=[MixedPrecision(init_scale=2.**14, clip=clip), n])
        return n.norm
    raw, clip = run(None), None
    clip = raw / 4
    clipped = run(clip)
    assert raw < 10  # unscaled: about the float32 norm, not 2^14 times it
    assert clipped == pytest.approx(clip, rel=1e-3)

def test_mixed_precision_refuses_models_without_parameters():
    learn = make_learner()
    learn.model = nn.Sequential(nn.Flatten(), nn.ReLU())
    with pytest.raises(ValueError, match='no parameters'): learn.fit(1, cbs=MixedPrecision())
    learn = make_learner(); learn.model.requires_grad_(False)
    with pytest.raises(ValueError, match='frozen'): learn.fit(1, cbs=MixedPrecision())
    assert {p.dtype for p in learn.model.parameters()} == {torch.float32}  # nothing converted
    learn = make_learner(); learn.model.half()
    with pytest.raises(ValueError, match='float32'): learn.fit(1, cbs=MixedPrecision())
    learn = make_learner(); learn.model = make_model()
    with pytest.raises(ValueError, match='create_opt'): learn.fit(1, cbs=MixedPrecision())

@pytest.mark.parametrize('kw', [dict(init_scale=0), dict(init_scale=float('inf')), dict(scale_wait=0), dict(scale_wait=1.5),
                                dict(div_factor=1.), dict(clip=-1), dict(init_scale=2.**30, max_scale=2.**24), dict(init_scale=True)])
def test_mixed_precision_bad_arguments(kw):
    with pytest.raises(ValueError, match='MixedPrecision'): MixedPrecision(**kw)

def test_overflow_every_step_never_changes_weights():
    learn = make_learner()
    w = [p.detach().clone() for p in learn.model.parameters()]
    mp = MixedPrecision(init_scale=2.**10)
    learn.fit(1, cbs=[mp, InjectInf(range(100))])
    assert mp.n_skipped == 4 and mp.loss_scale == 2.**6
    for a, b in zip(w, learn.model.parameters()): assert torch.equal(a, b)
    assert learn.opt.state == {}


class Peek(Callback):
    "Records the prediction's and the loss's dtypes, whether the first conv's output is channels_last, autocast in backward."
    _order = 100
    def begin_fit(self):
        def hook(mod, inp, out): self.cl = out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
        self.h = self.model[0].register_forward_hook(hook)
    def after_fit(self): self.h.remove()
    def after_pred(self): self.pred_dtype = self.pred.dtype
    def after_loss(self): self.loss_dtype = self.loss.dtype
    def after_backward(self): self.in_backward = torch.is_autocast_enabled('cpu')

def test_autocast_dtypes_and_memory_format():
    learn, peek = make_learner(), Peek()
    learn.fit(1, cbs=[AutocastCallback(), peek])
    assert (peek.pred_dtype, peek.loss_dtype, peek.cl, peek.in_backward) == (torch.bfloat16, torch.float32, True, False)
    assert not torch.is_autocast_enabled('cpu')
    assert learn.model[0].weight.is_contiguous() and learn.model[0].weight.dtype == torch.float32
    peek = Peek(); learn.fit(1, cbs=[AutocastCallback(channels_last=False), peek])
    assert peek.pred_dtype == torch.bfloat16 and not peek.cl

@pytest.mark.parametrize('exc', [CancelBatchException, RuntimeError, KeyboardInterrupt])
def test_autocast_closed_after_cancel_or_error(exc):
    class Boom(Callback):
        def after_pred(self):
            if self.in_train: raise exc()
    learn = make_learner()
    try: learn.fit(1, cbs=[AutocastCallback(), Boom()])
    except (RuntimeError, KeyboardInterrupt): pass
    assert not torch.is_autocast_enabled('cpu')
    assert learn.model[0].weight.is_contiguous()

def test_autocast_closed_when_batch_skipped_after_pred():
    class Skip(Callback):
        def after_pred(self): return True
    learn = make_learner(); state = {}
    class Check(Callback):
        _order = 100
        def after_batch(self): state.setdefault('on', []).append(torch.is_autocast_enabled('cpu'))
    learn.fit(1, cbs=[AutocastCallback(), Skip(), Check()])
    assert state['on'] and not any(state['on'])
    assert not torch.is_autocast_enabled('cpu')

@pytest.mark.parametrize('dtype', [torch.float16, torch.float32, torch.float64, 'bfloat16'])
def test_autocast_bad_dtype(dtype):
    with pytest.raises(ValueError, match='AutocastCallback'): AutocastCallback(dtype=dtype)
