"Tests for mylib.runner, callbacks, schedules and stats: the Runner's events and cancellation scopes, schedules at their boundaries, LR_Find, bad input."
import copy, math
import pytest
import torch
import torch.nn.functional as F
from torch import optim

from mylib.core import set_seed, camel2snake, listify
from mylib.training import Dataset, get_dls
from mylib.training import DataBunch
from mylib.callbacks import *
from mylib.stats import *
from mylib.schedules import *
from mylib.runner import *

EVENTS = ['begin_fit', 'begin_epoch', 'begin_batch', 'after_pred', 'after_loss', 'after_backward', 'after_step',
          'after_batch', 'begin_validate', 'after_epoch', 'after_fit',
          'after_cancel_batch', 'after_cancel_epoch', 'after_cancel_train']


def make_data(n_train=12, n_valid=4, bs=4, n_in=20, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    xt, xv = torch.randn(n_train, n_in, generator=g), torch.randn(n_valid, n_in, generator=g)
    yt, yv = torch.randint(0, c, (n_train,), generator=g), torch.randint(0, c, (n_valid,), generator=g)
    return DataBunch(*get_dls(Dataset(xt, yt), Dataset(xv, yv), bs), c=c)


def make_learner(data=None, lr=0.1, mom=0.9):
    data = data or make_data()
    set_seed(0)
    model, _ = get_model(data, nh=8)
    return Holder(model, optim.SGD(model.parameters(), lr=lr, momentum=mom), F.cross_entropy, data)


class CountCallback(Callback):
    "Counts events; raises `exc` at event `at` when (epoch, training batch) is in `when`."
    def __init__(self, exc=None, at=None, when=()):
        self.exc, self.at, self.when = exc, at, set(when)
        self.counts = dict.fromkeys(EVENTS, 0)

    def _event(self, e):
        self.counts[e] += 1
        if e == self.at and self.in_train and (self.epoch, self.iter) in self.when: raise self.exc()

for _e in EVENTS: setattr(CountCallback, _e, (lambda e: lambda self: self._event(e))(_e))


def count_run(epochs=3, **kwargs):
    cb = CountCallback(**kwargs)
    Runner(cbs=cb).fit(epochs, make_learner())
    return cb.counts

# --- the loop and its events ---------------------------------------------------------------------------------------

def test_data_shape():
    d = make_data()
    assert (len(d.train_dl), len(d.valid_dl)) == (3, 1)


def test_plain_counts():
    c = count_run()
    assert c['begin_fit'] == c['after_fit'] == 1
    assert c['begin_epoch'] == c['after_epoch'] == c['begin_validate'] == 3
    assert c['begin_batch'] == c['after_batch'] == 3 * 4
    assert c['after_step'] == c['after_backward'] == 9
    assert c['after_cancel_batch'] == c['after_cancel_epoch'] == c['after_cancel_train'] == 0


def test_callback_order_and_state():
    seen = []
    class A(Callback):
        _order = 2
        def begin_fit(self): seen.append('a')
    class B(Callback):
        _order = 1
        def begin_fit(self): seen.append('b')
    run = Runner(cbs=[A(), B()])
    run.fit(1, make_learner())
    assert seen == ['b', 'a']
    assert run.a is run.cbs[2] and isinstance(run.b, B)  # sorted by _order: TrainEvalCallback (0), B (1), A (2)


def test_skip_step_by_returning_true():
    learn = make_learner()
    before = [p.detach().clone() for p in learn.model.parameters()]
    class NoStep(Callback):
        def after_backward(self): return True
    Runner(cbs=NoStep()).fit(2, learn)
    for p, b in zip(learn.model.parameters(), before): assert torch.equal(p.detach(), b)


def test_after_epoch_true_stops():
    class StopNow(Callback):
        def after_epoch(self): return True
    cb = CountCallback()
    Runner(cbs=[cb, StopNow()]).fit(5, make_learner())
    assert cb.counts['begin_epoch'] == 1 and cb.counts['after_fit'] == 1


def test_names():
    assert camel2snake('AvgStatsCallback') == 'avg_stats_callback'
    assert camel2snake('LR_Find') == 'lr_find'
    assert AvgStatsCallback([]).name == 'avg_stats'
    assert LR_Find().name == 'lr_find'
    assert Recorder().name == 'recorder'
    assert TrainEvalCallback().name == 'train_eval'


def test_callback_getattr_without_runner():
    cb = Callback()
    with pytest.raises(AttributeError, match='not attached'): cb.model
    copy.deepcopy(cb)  # must not recurse through __getattr__

# --- cancellation scopes ---------------------------------------------------------------------------------------------

def test_cancel_batch_scope():
    c = count_run(exc=CancelBatchException, at='after_loss', when=[(e, 1) for e in range(3)])
    assert c['after_cancel_batch'] == 3
    assert c['after_backward'] == c['after_step'] == 9 - 3
    assert c['after_batch'] == 12                      # the cancelled batches still close
    assert c['begin_epoch'] == c['after_epoch'] == c['begin_validate'] == 3
    assert c['after_cancel_epoch'] == c['after_cancel_train'] == 0 and c['after_fit'] == 1


def test_cancel_batch_from_begin_batch():
    c = count_run(exc=CancelBatchException, at='begin_batch', when=[(0, 0)])
    assert c['after_pred'] == 12 - 1 and c['after_step'] == 8 and c['after_batch'] == 12


def test_cancel_epoch_scope():
    c = count_run(exc=CancelEpochException, at='begin_batch', when=[(0, 1)])
    assert c['after_cancel_epoch'] == 1
    assert c['after_step'] == 1 + 3 + 3               # epoch 0 stopped after its first batch
    assert c['begin_validate'] == 2                    # ... and skipped its validation
    assert c['begin_epoch'] == c['after_epoch'] == 3   # the other epochs ran
    assert c['after_cancel_batch'] == c['after_cancel_train'] == 0 and c['after_fit'] == 1


def test_cancel_train_scope():
    c = count_run(exc=CancelTrainException, at='after_step', when=[(1, 2)])
    assert c['after_cancel_train'] == 1 and c['after_fit'] == 1
    assert c['after_step'] == 6 and c['begin_epoch'] == 2
    assert c['after_epoch'] == 1 and c['begin_validate'] == 1
    assert c['after_cancel_batch'] == c['after_cancel_epoch'] == 0


def test_cancel_train_in_begin_fit():
    class Nope(Callback):
        def begin_fit(self): raise CancelTrainException()
    cb = CountCallback()
    Runner(cbs=[cb, Nope()]).fit(3, make_learner())
    assert cb.counts['begin_epoch'] == 0 and cb.counts['after_cancel_train'] == 1 and cb.counts['after_fit'] == 1


class Boom(Exception): pass


@pytest.mark.parametrize('at', ['begin_fit', 'begin_batch', 'after_loss', 'after_step', 'begin_validate', 'after_epoch'])
def test_other_exception_propagates_unchanged_after_after_fit(at):
    exc = Boom('boom')
    cb = CountCallback()
    def raiser(self): raise exc
    setattr(cb, at, raiser.__get__(cb))
    run = Runner(cbs=cb)
    with pytest.raises(Boom) as info: run.fit(2, make_learner())
    assert info.value is exc
    assert cb.counts['after_fit'] == 1
    assert run.learn is None


def test_error_in_model_propagates():
    learn = make_learner()
    def bad_loss(pred, yb): raise RuntimeError('bad loss')
    learn.loss_func = bad_loss
    cb = CountCallback()
    with pytest.raises(RuntimeError, match='bad loss'): Runner(cbs=cb).fit(1, learn)
    assert cb.counts['after_fit'] == 1

# --- bad input -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('epochs', [0, -1, 1.5, True, '2'])
def test_fit_bad_epochs(epochs):
    cb = CountCallback()
    with pytest.raises(ValueError, match='epochs'): Runner(cbs=cb).fit(epochs, make_learner())
    assert cb.counts['begin_fit'] == 0


def test_fit_empty_loader():
    data = make_data(n_train=0)
    with pytest.raises(ValueError, match='empty'): Runner().fit(1, make_learner(data))


@pytest.mark.parametrize('name', ['Fit', 'Opt', 'Model', 'Loss', 'Data', 'OneBatch', 'Epoch', 'InTrain'])
def test_name_collision(name):
    cls = type(name + 'Callback', (Callback,), {})
    with pytest.raises(ValueError, match='Rename'): Runner(cb_funcs=cls)
    with pytest.raises(ValueError, match='already a Runner attribute'): Runner(cbs=cls())


def test_not_a_callback():
    with pytest.raises(TypeError): Runner(cbs=lambda: None)

# --- AvgStats --------------------------------------------------------------------------------------------------------

def test_avg_stats_weighted():
    data = make_data(n_train=10, n_valid=7, bs=4)   # uneven last batches
    learn = make_learner(data)
    run = Runner(cbs=AvgStatsCallback([lambda out, yb: (out.argmax(1) == yb).float().mean()], show=False))
    run.fit(1, learn)
    with torch.no_grad():
        xs = torch.stack([data.valid_ds[i][0] for i in range(len(data.valid_ds))])
        ys = torch.stack([torch.as_tensor(data.valid_ds[i][1]) for i in range(len(data.valid_ds))])
        out = learn.model(xs)
    loss, acc = run.avg_stats.valid_stats.avg_stats
    assert math.isclose(loss, F.cross_entropy(out, ys).item(), rel_tol=1e-5)
    assert math.isclose(acc, (out.argmax(1) == ys).float().mean().item(), rel_tol=1e-6)

# --- schedules -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('sched', [sched_lin, sched_cos, sched_exp])
def test_sched_boundaries(sched):
    f = sched(2., 0.01)
    assert math.isclose(f(0.), 2.) and math.isclose(f(1.), 0.01)


def test_sched_midpoints():
    assert math.isclose(sched_lin(0., 2.)(0.5), 1.)
    assert math.isclose(sched_cos(0., 2.)(0.5), 1.)
    assert math.isclose(sched_exp(1e-4, 1.)(0.5), 1e-2)
    assert sched_no(3., 5.)(0.) == sched_no(3., 5.)(1.) == 3.


def test_sched_exp_bad():
    with pytest.raises(ValueError, match='positive'): sched_exp(0., 1.)(0.5)


def test_combine_scheds_joins():
    f = combine_scheds([0.25, 0.5, 0.25], [sched_lin(0., 1.), sched_no(5., 5.), sched_lin(1., 0.)])
    assert f(0.) == 0. and math.isclose(f(0.125), 0.5)
    assert f(0.25) == 5. and f(0.5) == 5.            # at a join the next piece starts
    assert math.isclose(f(0.75), 1.) and math.isclose(f(1.), 0.)
    assert math.isclose(f(0.25 - 1e-9), 1., rel_tol=1e-6)   # the first piece reaches its end just before the join
    g = combine_scheds([0.3, 0.7], [sched_cos(0.1, 1.), sched_cos(1., 0.)])
    assert math.isclose(g(0.3 - 1e-12), g(0.3), rel_tol=1e-6)   # one-cycle is continuous at the join
    assert combine_scheds([1.], [sched_lin(1., 2.)])(1.) == 2.
    assert math.isclose(combine_scheds([0.1] * 10, [sched_no(i, i) for i in range(10)])(0.95), 9)


@pytest.mark.parametrize('pcts', [[0.3, 0.6], [0.5, 0.6], [0., 1.], [-0.5, 1.5], [1.2]])
def test_combine_scheds_bad_pcts(pcts):
    with pytest.raises(ValueError, match='fraction|whole run'): combine_scheds(pcts, [sched_no(1, 1)] * len(pcts))


def test_combine_scheds_bad_lengths_and_pos():
    with pytest.raises(ValueError, match='one fraction per schedule'): combine_scheds([0.5, 0.5], [sched_no(1, 1)])
    f = combine_scheds([1.], [sched_no(1, 1)])
    with pytest.raises(ValueError, match='pos'): f(1.5)


def test_param_scheduler_positions_and_groups():
    data = make_data(n_train=20, bs=4)             # 5 batches per epoch
    set_seed(0)
    model, _ = get_model(data, nh=8)
    opt = optim.SGD([{'params': model[0].parameters()}, {'params': model[2].parameters()}], lr=1., momentum=0.9)
    learn = Holder(model, opt, F.cross_entropy, data)
    scheds = [sched_lin(1., 0.), sched_exp(1e-3, 1.)]
    mom = combine_scheds([0.5, 0.5], [sched_lin(0.95, 0.85), sched_lin(0.85, 0.95)])
    run = Runner(cb_funcs=[Recorder, lambda: ParamScheduler('lr', scheds), lambda: ParamScheduler('momentum', mom)])
    run.fit(2, learn)
    N = 10
    for g in range(2):
        assert len(run.recorder.lrs[g]) == N
        for k in range(N): assert math.isclose(run.recorder.lrs[g][k], scheds[g](k / N), rel_tol=1e-9)
    assert run.recorder.lrs[0][0] == 1. and run.recorder.lrs[1][0] == 1e-3     # pos 0 at the first batch
    for k in range(N): assert math.isclose(run.recorder.hypers['momentum'][0][k], mom(k / N))


def test_param_scheduler_bad():
    with pytest.raises(ValueError, match='parameter groups'):
        Runner(cbs=ParamScheduler('lr', [sched_no(1, 1)] * 2)).fit(1, make_learner())
    with pytest.raises(KeyError, match='mom'):
        Runner(cbs=ParamScheduler('mom', sched_no(1, 1))).fit(1, make_learner())

# --- LR_Find ---------------------------------------------------------------------------------------------------------

def _train_a_bit(learn, n=5):
    class StopAfter(Callback):
        def after_batch(self):
            if self.n_iter >= n: raise CancelTrainException()
    Runner(cbs=StopAfter()).fit(10, learn)


def _assert_same_state(learn, model_state, opt_state, grads):
    for k, v in learn.model.state_dict().items(): assert torch.equal(v, model_state[k]), k
    sd = learn.opt.state_dict()
    assert sd['param_groups'] == opt_state['param_groups']
    assert sd['state'].keys() == opt_state['state'].keys()
    for i, s in opt_state['state'].items():
        for k, v in s.items(): assert torch.equal(sd['state'][i][k], v) if torch.is_tensor(v) else sd['state'][i][k] == v
    for p, g in zip(learn.model.parameters(), grads):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)


@pytest.mark.parametrize('pretrain', [False, True])
def test_lr_find_restores_state_exactly(pretrain):
    learn = make_learner(make_data(n_train=64, bs=4))
    if pretrain: _train_a_bit(learn)
    model_state, opt_state = copy.deepcopy(learn.model.state_dict()), copy.deepcopy(learn.opt.state_dict())
    grads = [None if p.grad is None else p.grad.clone() for p in learn.model.parameters()]
    run = Runner(cb_funcs=[LR_Find, Recorder])
    run.fit(10, learn)
    assert len(run.recorder.losses) >= 2
    _assert_same_state(learn, model_state, opt_state, grads)


def test_lr_find_stops_at_max_iter():
    learn = make_learner(make_data(n_train=64, bs=4))   # 16 batches per epoch
    run = Runner(cb_funcs=[lambda: LR_Find(max_iter=20, min_lr=1e-6, max_lr=1e-5), Recorder])
    run.fit(5, learn)
    assert run.lr_find.stop_reason == 'max_iter'
    assert len(run.recorder.losses) == 20
    assert math.isclose(run.recorder.lrs[0][0], 1e-6) and math.isclose(run.recorder.lrs[0][-1], 1e-5)
    for k, lr in enumerate(run.recorder.lrs[0]): assert math.isclose(lr, 1e-6 * 10 ** (k / 19))


def test_lr_find_stops_at_divergence():
    learn = make_learner(make_data(n_train=400, bs=4), mom=0.)
    run = Runner(cb_funcs=[lambda: LR_Find(max_iter=100, min_lr=1e-2, max_lr=1e6), Recorder])
    run.fit(1, learn)
    losses = run.recorder.losses
    assert run.lr_find.stop_reason == 'divergence' and len(losses) < 100
    last = losses[-1]
    assert math.isnan(last) or last > 10 * min(losses[:-1])
    assert all(not l > 10 * min(losses[:i]) for i, l in enumerate(losses[:-1]) if i > 0)   # not earlier


def test_lr_find_warns_when_run_too_short():
    learn = make_learner(make_data(n_train=16, bs=4))
    run = Runner(cb_funcs=[lambda: LR_Find(max_iter=100, min_lr=1e-6, max_lr=1e-5)])
    with pytest.warns(UserWarning, match='before reaching max_lr'): run.fit(2, learn)
    assert run.lr_find.stop_reason == 'end of run'


def test_lr_find_bad_args():
    with pytest.raises(ValueError): LR_Find(max_iter=1)
    with pytest.raises(ValueError): LR_Find(min_lr=1., max_lr=0.1)
