"""Tests for the final Learner (notebook 09b) and ProgressCallback (09c): checkpoints, resuming, load errors, events and
cancellation, callbacks management, parameter groups, and the progress output in a console or a log."""
import os, sys, subprocess
import pytest
from conftest import run_in_pty
import torch
import torch.nn.functional as F
from torch import nn, optim

from mylib.core import set_seed, get_rng_state, set_rng_state
from mylib.training import Dataset, get_dls, accuracy
from mylib.training import DataBunch
from mylib.callbacks import *
from mylib.stats import *
from mylib.schedules import *
from mylib.runner import Holder, Runner, get_model
from mylib.learner import *
from mylib.optimizers import adam_opt, sgd_opt
from mylib.progress import ProgressCallback

EVENTS = ['begin_fit', 'begin_epoch', 'begin_batch', 'after_pred', 'after_loss', 'after_backward', 'after_step',
          'after_batch', 'begin_validate', 'after_epoch', 'after_fit',
          'after_cancel_batch', 'after_cancel_epoch', 'after_cancel_train']


def make_data(n_train=48, n_valid=20, bs=8, n_in=12, c=3, seed=0):
    "A small learnable problem: the class is the argmax of three fixed projections of the input."
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_in, c, generator=g)
    xt, xv = torch.randn(n_train, n_in, generator=g), torch.randn(n_valid, n_in, generator=g)
    return DataBunch(*get_dls(Dataset(xt, (xt @ w).argmax(1)), Dataset(xv, (xv @ w).argmax(1)), bs), c=c)


def make_model(n_in=12, nh=16, c=3, seed=0):
    set_seed(seed)
    return nn.Sequential(nn.Linear(n_in, nh), nn.BatchNorm1d(nh), nn.ReLU(), nn.Linear(nh, c))


def one_cycle(lr_max):
    return (combine_scheds([0.3, 0.7], [sched_cos(lr_max / 25, lr_max), sched_cos(lr_max, lr_max / 1e4)]),
            combine_scheds([0.3, 0.7], [sched_cos(0.95, 0.85), sched_cos(0.85, 0.95)]))


def make_learner(data=None, seed=0, opt_func=None, stats=True, **kwargs):
    data = data or make_data()
    sched_lr, sched_mom = one_cycle(1e-2)
    cbs = [ParamScheduler('lr', sched_lr), ParamScheduler('mom', sched_mom)]
    if stats: cbs.insert(0, AvgStatsCallback([accuracy], show=False))
    return Learner(make_model(seed=seed), data, F.cross_entropy, opt_func=opt_func or adam_opt(wd=1e-2), lr=1e-2,
                   cbs=cbs, **kwargs)


def weights(learn): return [v.clone() for v in learn.model.state_dict().values()]


def predict(learn, x):
    learn.model.eval()
    with torch.no_grad(): return learn.model(x)


# --- checkpoints ---------------------------------------------------------------------------------------------------

def test_save_load_round_trip_identical_predictions(tmp_path):
    learn = make_learner()
    learn.fit(2)
    path = learn.save(tmp_path/'sub'/'m.pth')  # the folder is created
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == ['m.pth']
    other = make_learner(seed=1)
    x = learn.data.valid_ds.x
    assert not torch.equal(predict(other, x), predict(learn, x))
    other.load(path)
    assert torch.equal(predict(other, x), predict(learn, x))
    sd_a, sd_b = learn.opt.state_dict(), other.opt.state_dict()
    assert sd_a['param_groups'] == sd_b['param_groups']
    for i, s in sd_a['state'].items():
        for k, v in s.items():
            assert torch.equal(v, sd_b['state'][i][k]) if isinstance(v, torch.Tensor) else v == sd_b['state'][i][k]


def test_save_with_torch_optimizer(tmp_path):
    learn = Learner(make_model(), make_data(), F.cross_entropy, opt_func=lambda ps, lr: optim.SGD(ps, lr=lr, momentum=0.9))
    learn.fit(1)
    learn.save(tmp_path/'t.pth')
    other = Learner(make_model(seed=3), make_data(), F.cross_entropy,
                    opt_func=lambda ps, lr: optim.SGD(ps, lr=lr, momentum=0.9)).load(tmp_path/'t.pth')
    assert torch.equal(predict(other, learn.data.valid_ds.x), predict(learn, learn.data.valid_ds.x))


class SaveAndStop(Callback):
    _order = 10
    def __init__(self, path, epoch): self.path, self.stop_at = path, epoch
    def after_epoch(self):
        if self.epoch == self.stop_at:
            self.run.save(self.path)
            raise CancelTrainException()


@pytest.mark.parametrize('stop_at', [0, 1])
def test_resume_equals_uninterrupted(tmp_path, stop_at):
    a = make_learner(); set_seed(7); a.fit(3)
    b = make_learner(); set_seed(7); b.fit(3, cbs=SaveAndStop(tmp_path/'run.pth', stop_at))
    c = make_learner(seed=5).load(tmp_path/'run.pth', with_rng=True)
    c.fit(3, start_epoch=stop_at + 1)
    for x, y in zip(weights(c), weights(a)): assert torch.equal(x, y)  # exact on the CPU
    assert c.avg_stats.history == a.avg_stats.history[stop_at + 1:]


def test_resume_without_rng_differs(tmp_path):
    a = make_learner(); set_seed(7); a.fit(3)
    b = make_learner(); set_seed(7); b.fit(3, cbs=SaveAndStop(tmp_path/'run.pth', 0))
    c = make_learner(seed=5).load(tmp_path/'run.pth')   # generators not restored: other batch order
    c.fit(3, start_epoch=1)
    assert any(not torch.equal(x, y) for x, y in zip(weights(c), weights(a)))


def test_rng_state_round_trip():
    import random
    import numpy as np
    set_seed(3)
    state = get_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_seed(99)
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_atomic_save_keeps_old_checkpoint(tmp_path, monkeypatch):
    learn = make_learner(); learn.fit(1)
    path = learn.save(tmp_path/'m.pth')
    good = path.read_bytes()
    def failing_save(obj, f):
        f.write(b'partial')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(torch, 'save', failing_save)
    learn.fit(1)
    with pytest.raises(OSError, match='No space'): learn.save(path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ['m.pth']  # no temporary file left behind


def test_load_errors(tmp_path):
    learn = make_learner(); learn.fit(1)
    path = learn.save(tmp_path/'m.pth')
    with pytest.raises(FileNotFoundError, match='no checkpoint at .*missing.pth'): learn.load(tmp_path/'missing.pth')
    with pytest.raises(FileNotFoundError, match='folder'): learn.load(tmp_path)
    (tmp_path/'junk.pth').write_bytes(b'\x00not a checkpoint')
    with pytest.raises(ValueError, match='not a checkpoint'): learn.load(tmp_path/'junk.pth')
    torch.save({'some': torch.zeros(2)}, tmp_path/'plain.pth')
    with pytest.raises(ValueError, match='not a Learner checkpoint'): learn.load(tmp_path/'plain.pth')
    wider = Learner(make_model(nh=32), make_data(), F.cross_entropy, opt_func=adam_opt(wd=1e-2))
    with pytest.raises(ValueError, match='different architecture.*0.weight'): wider.load(path)
    deeper = Learner(nn.Sequential(*make_model(), nn.Linear(3, 3)), make_data(), F.cross_entropy)
    with pytest.raises(ValueError, match='different architecture.*not in the checkpoint'): deeper.load(path)
    with pytest.raises(ValueError, match='does not fit this optimizer'): make_learner(opt_func=sgd_opt(mom=0.9)).load(path)
    # a failed load leaves the learner unchanged
    before = weights(wider)
    with pytest.raises(ValueError): wider.load(path)
    for x, y in zip(weights(wider), before): assert torch.equal(x, y)


def test_load_weights_only(tmp_path):
    learn = make_learner(); learn.fit(1)
    path = learn.save(tmp_path/'m.pth', with_opt=False)
    other = make_learner(seed=2, opt_func=sgd_opt(mom=0.9))
    with pytest.raises(ValueError, match='without the optimizer state'): other.load(path)
    other.load(path, with_opt=False)
    assert torch.equal(predict(other, learn.data.valid_ds.x), predict(learn, learn.data.valid_ds.x))


# --- the loop: events and cancellation -----------------------------------------------------------------------------

class Log(Callback):
    def __init__(self, exc=None, at=None, when=None): self.exc, self.at, self.when, self.log = exc, at, when, []
    def _event(self, e):
        self.log.append((e, getattr(self.run, 'epoch', None), getattr(self.run, 'iter', None)))
        if e == self.at and getattr(self.run, 'in_train', False) and (self.epoch, self.iter) == self.when: raise self.exc()
for _e in EVENTS: setattr(Log, _e, (lambda e: lambda self: self._event(e))(_e))


@pytest.mark.parametrize('kw', [{}, dict(exc=CancelBatchException, at='after_pred', when=(0, 1)),
                                dict(exc=CancelBatchException, at='after_backward', when=(1, 2)),
                                dict(exc=CancelEpochException, at='after_loss', when=(0, 0)),
                                dict(exc=CancelTrainException, at='after_step', when=(1, 0)),
                                dict(exc=CancelTrainException, at='begin_batch', when=(0, 0))])
def test_same_events_as_runner(kw):
    data = make_data(n_train=20, n_valid=6, bs=8)
    set_seed(1); model, opt = get_model(data, nh=8)
    log_run = Log(**kw); Runner(cbs=log_run).fit(2, Holder(model, opt, F.cross_entropy, data))
    set_seed(1); model, _ = get_model(data, nh=8)
    log_learn = Log(**kw); Learner(model, data, F.cross_entropy, cbs=log_learn).fit(2)
    assert log_learn.log == log_run.log


def count_events(epochs=2, **kw):
    cb = Log(**kw)
    learn = Learner(make_model(), make_data(), F.cross_entropy, cbs=cb)
    learn.fit(epochs)
    counts = dict.fromkeys(EVENTS, 0)
    for e, *_ in cb.log: counts[e] += 1
    return counts, learn


def test_cancel_batch_skips_step_only():
    c, _ = count_events(exc=CancelBatchException, at='after_backward', when=(0, 2))
    n, nv = len(make_data().train_dl), len(make_data().valid_dl)
    assert c['after_cancel_batch'] == 1 and c['after_step'] == 2 * n - 1 and c['after_batch'] == 2 * (n + nv)


def test_cancel_epoch_skips_validation():
    c, _ = count_events(exc=CancelEpochException, at='after_step', when=(0, 1))
    assert c['after_cancel_epoch'] == 1 and c['begin_validate'] == 1 and c['after_epoch'] == 2


def test_cancel_train_ends_fit():
    c, learn = count_events(epochs=5, exc=CancelTrainException, at='after_step', when=(1, 0))
    assert c['after_cancel_train'] == 1 and c['after_fit'] == 1 and c['begin_epoch'] == 2
    assert learn.loss is None and learn.pred is None  # the last batch was released


def test_other_errors_propagate_after_fit_and_fit_cbs_are_removed():
    class Boom(Callback):
        def after_loss(self): raise RuntimeError('boom')
    learn = Learner(make_model(), make_data(), F.cross_entropy)
    log, boom = Log(), Boom()
    with pytest.raises(RuntimeError, match='boom'): learn.fit(1, cbs=[log, boom])
    assert log.log[-1][0] == 'after_fit'
    assert log not in learn.cbs and boom not in learn.cbs and not hasattr(learn, 'boom')
    class CancelBatchInBeginEpoch(Callback):
        def begin_epoch(self): raise CancelBatchException()
    with pytest.raises(CancelBatchException):   # a cancellation out of its scope is an error too
        learn.fit(1, cbs=CancelBatchInBeginEpoch())


def test_skip_by_returning_true():
    class NoStep(Callback):
        def after_backward(self): return True
    learn = Learner(make_model(), make_data(), F.cross_entropy, cbs=NoStep())
    before = weights(learn)
    learn.fit(1)
    params = dict(learn.model.named_parameters())
    for (k, v), b in zip(learn.model.state_dict().items(), before):
        if k in params: assert torch.equal(v, b)


# --- construction, parameter groups, callbacks --------------------------------------------------------------------

def test_param_groups_from_splitter():
    split = lambda m: [list(m[:2].parameters()), list(m[3].parameters())]
    learn = Learner(make_model(), make_data(), F.cross_entropy, opt_func=adam_opt(), lr=3e-3, splitter=split)
    assert [len(pg['params']) for pg in learn.opt.param_groups] == [4, 2]
    assert all(pg['lr'] == 3e-3 for pg in learn.opt.param_groups)
    t = Learner(make_model(), make_data(), F.cross_entropy, opt_func=optim.Adam, lr=1e-3, splitter=split)
    assert isinstance(t.opt, optim.Adam) and len(t.opt.param_groups) == 2
    with pytest.raises(ValueError, match='left out 2'):
        Learner(make_model(), make_data(), F.cross_entropy, splitter=lambda m: [list(m[:2].parameters())])
    with pytest.raises(ValueError, match='empty parameter group'):
        Learner(make_model(), make_data(), F.cross_entropy, splitter=lambda m: [list(m.parameters()), []])
    frozen = make_model()
    for p in frozen[0].parameters(): p.requires_grad_(False)
    Learner(frozen, make_data(), F.cross_entropy, splitter=lambda m: [list(m[1:].parameters())])  # frozen: fine


def test_default_optimizer_and_reset_opt():
    learn = Learner(make_model(), make_data(), F.cross_entropy)
    assert learn.opt.param_groups[0]['lr'] == 1e-2
    learn.fit(1)
    old = learn.opt
    learn.fit(1, reset_opt=True)
    assert learn.opt is not old


def test_notebook_04_form_is_refused():
    "Learner takes one signature: the old Learner(model, opt, loss_func, data) says to use Holder with a Runner."
    data, model = make_data(), make_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match='second argument is an optimizer.*Holder'): Learner(model, opt, F.cross_entropy, data)
    with pytest.raises(TypeError, match='must be a DataBunch'): Learner(model, [1, 2], F.cross_entropy)
    holder = Holder(model, opt, F.cross_entropy, data)
    Runner(cbs=AvgStatsCallback([accuracy], show=False)).fit(1, holder)  # where the old form lives now


@pytest.mark.parametrize('factory', [sgd_opt, adam_opt])
def test_uncalled_factory_is_refused(factory):
    with pytest.raises(TypeError, match=rf'{factory.__name__}\(\)'):
        Learner(make_model(), make_data(), F.cross_entropy, opt_func=factory)


def test_opt_func_that_makes_no_optimizer():
    with pytest.raises(TypeError, match='not an optimizer'):
        Learner(make_model(), make_data(), F.cross_entropy, opt_func=lambda groups, lr: 'not one')


def test_recorder_before_fit_says_so():
    for f in (lambda r: r.plot_lr(), lambda r: r.plot_loss(), lambda r: r.lrs):
        with pytest.raises(RuntimeError, match='nothing has been recorded yet'): f(Recorder())


def test_opt_func_must_be_callable():
    model = make_model()
    with pytest.raises(TypeError, match='opt_func must be a function'):
        Learner(model, make_data(), F.cross_entropy, optim.SGD(model.parameters(), lr=0.1))


def test_callbacks_management():
    learn = Learner(make_model(), make_data(), F.cross_entropy, cb_funcs=Recorder)
    assert isinstance(learn.recorder, Recorder)
    stats = AvgStatsCallback(show=False)
    learn.fit(1, cbs=stats)
    assert stats not in learn.cbs and not hasattr(learn, 'avg_stats') and len(stats.history) == 1
    learn.add_cb(stats)
    with pytest.raises(ValueError, match='already one of its callbacks'): learn.add_cb(stats)
    with pytest.raises(ValueError, match='already a Learner attribute'):
        learn.add_cb(type('FitCallback', (Callback,), {})())
    with pytest.raises(ValueError, match='already a Learner attribute'):
        learn.add_cb(type('ModelCallback', (Callback,), {})())
    with pytest.raises(TypeError, match='Callback instances'): learn.add_cb(print)
    a, b = ParamScheduler('lr', sched_no(0.1, 0.1)), ParamScheduler('wd', sched_no(0., 0.))
    learn.add_cbs([a, b])
    assert learn.param_scheduler is b
    learn.remove_cb(b)
    assert learn.param_scheduler is a        # falls back to the other one of that name
    learn.remove_cb(a); learn.remove_cb(a)   # removing twice is harmless
    assert not hasattr(learn, 'param_scheduler')


def test_bad_fit_args():
    learn = Learner(make_model(), make_data(), F.cross_entropy)
    for kw in (dict(epochs=0), dict(epochs=1.5), dict(epochs=2, start_epoch=2), dict(epochs=2, start_epoch=-1)):
        with pytest.raises(ValueError): learn.fit(**kw)
    empty = DataBunch(*get_dls(Dataset(torch.zeros(0, 12), torch.zeros(0, dtype=torch.long)),
                               Dataset(torch.zeros(4, 12), torch.zeros(4, dtype=torch.long)), 4), c=3)
    with pytest.raises(ValueError, match='empty'): Learner(make_model(), empty, F.cross_entropy).fit(1)


def test_lr_find_restores_learner():
    learn = make_learner(stats=False)
    learn.fit(1)
    before_w, before_o = weights(learn), learn.opt.state_dict()
    finder = LR_Find(max_iter=10, min_lr=1e-4, max_lr=1)
    learn.fit(2, cbs=[finder, Recorder()])
    assert finder.stop_reason in ('max_iter', 'divergence')
    for x, y in zip(weights(learn), before_w): assert torch.equal(x, y)
    assert learn.opt.state_dict()['param_groups'] == before_o['param_groups']


def test_get_learner_builds_cnn():
    g = torch.Generator().manual_seed(0)
    data = DataBunch(*get_dls(Dataset(torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)),
                              Dataset(torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)), 8), c=10)
    learn = get_learner([4, 8], data, lr=1e-3, opt_func=adam_opt(), bn=True)
    assert isinstance(learn, Learner) and learn.model[-1].out_features == 10
    learn.fit(1)


# --- ProgressCallback -----------------------------------------------------------------------------------------------

def test_progress_console_table(capsys):
    learn = make_learner()
    learn.fit(2, cbs=ProgressCallback(console=True))
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ['epoch', 'train_loss', 'train_accuracy', 'valid_loss', 'valid_accuracy', 'time']
    assert [l.split()[0] for l in lines[1:]] == ['1', '2'] and len(lines) == 3
    for l, h in zip(lines[1:], learn.avg_stats.history):
        assert [float(v) for v in l.split()[1:5]] == [round(h[k], 4) for k in
                                                      ('train_loss', 'train_accuracy', 'valid_loss', 'valid_accuracy')]
    assert '\r' not in out and '█' not in out   # not a terminal: no bars drawn
    assert learn.avg_stats.show is False        # put back as it was


def test_progress_replaces_stats_printing(capsys):
    learn = Learner(make_model(), make_data(), F.cross_entropy, cbs=AvgStatsCallback([accuracy], show=True))
    learn.fit(1, cbs=ProgressCallback(console=True))
    out = capsys.readouterr().out
    assert 'epoch 1/1' not in out and len(out.splitlines()) == 2
    assert learn.avg_stats.show is True
    learn.fit(1)
    assert 'epoch 1/1' in capsys.readouterr().out


def test_progress_silent_when_removed(capsys):
    learn = make_learner()
    progress = learn.add_cb(ProgressCallback(console=True))
    learn.fit(1)
    assert capsys.readouterr().out
    learn.remove_cb(progress)
    learn.fit(1)
    assert capsys.readouterr().out == ''


def test_progress_without_stats_and_with_cancel(capsys):
    class StopMidEpoch(Callback):
        def after_batch(self):
            if self.epoch == 1 and self.iter == 2: raise CancelTrainException()
    learn = Learner(make_model(), make_data(), F.cross_entropy)
    learn.fit(3, cbs=[ProgressCallback(console=True), StopMidEpoch()])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ['epoch', 'time'] and [l.split()[0] for l in lines[1:]] == ['1']


def test_progress_with_start_epoch(capsys):
    learn = make_learner()
    learn.fit(3, start_epoch=2, cbs=ProgressCallback(console=True))
    lines = capsys.readouterr().out.splitlines()
    assert [l.split()[0] for l in lines[1:]] == ['3']


SCRIPT = '''
import torch, torch.nn.functional as F
from torch import nn
from mylib.training import Dataset, get_dls
from mylib.training import DataBunch
from mylib.learner import Learner
from mylib.progress import ProgressCallback
torch.manual_seed(0)
x, y = torch.randn(64, 5), torch.randint(0, 2, (64,))
data = DataBunch(*get_dls(Dataset(x, y), Dataset(x[:16], y[:16]), 8), c=2)
Learner(nn.Linear(5, 2), data, F.cross_entropy).fit(2, cbs=ProgressCallback())
'''

def test_progress_console_in_a_pipe():
    "A script whose output goes to a pipe (a CI log) writes the table, and no bars."
    env = {k: v for k, v in os.environ.items() if k != 'MYLIB_QUICK'}
    res = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, timeout=25, env=env)
    assert res.returncode == 0, res.stderr.decode()
    out = res.stdout.decode()
    assert '\r' not in out and '█' not in out
    assert [l.split()[0] for l in out.splitlines()] == ['epoch', '1', '2']


@pytest.mark.skipif(not hasattr(os, 'openpty'), reason='needs a pseudo-terminal')
def test_progress_console_in_a_terminal():
    "On a terminal the bars are drawn (and wiped at the end of each pass), around the same table."
    env = {k: v for k, v in os.environ.items() if k != 'MYLIB_QUICK'}
    raw = run_in_pty(SCRIPT, env={**env, 'COLUMNS': '100'}, timeout=25)
    assert 'Epoch 1/2' in raw and '100.00%' in raw and '\r' in raw
    lines = [l.split('\r')[-1].split() for l in raw.replace('\r\n', '\n').split('\n')]
    assert [l[0] for l in lines if l] == ['epoch', '1', '2']


def test_progress_live_plot_runs_from_the_library(capsys):
    "plot=True redraws the loss graph from the module's own code (not the notebook's), in any bar mode."
    learn = make_learner()
    cb = ProgressCallback(console=True, plot=True, plot_every=0.)
    graphs = []
    class RecordingBar:  # stands in for fastprogress's bar, recording what would be drawn
        def __init__(self, bar): self.bar = bar
        def __getattr__(self, k): return getattr(self.bar, k)
        def update_graph(self, g, x_bounds=None): graphs.append((g, x_bounds))
    real_begin_fit = cb.begin_fit
    def begin_fit():
        real_begin_fit(); cb.mbar = RecordingBar(cb.mbar)
    cb.begin_fit = begin_fit
    learn.fit(2, cbs=cb)
    assert graphs, 'the live plot was never redrawn'
    (train, valid), bounds = graphs[-1][0], graphs[-1][1]
    assert len(train[1]) == 2 * len(learn.data.train_dl) and bounds == (0, 2 * len(learn.data.train_dl))
    assert len(valid[0]) == 2  # one validation loss per epoch
