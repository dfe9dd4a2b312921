"Tests for mylib.optimizers: step for step against torch.optim, weight decay vs L2, parameter groups, bad input, state."
import copy
import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim

from mylib.core import set_seed
from mylib.optimizers import *


def make_model(seed=0):
    set_seed(seed)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).double()


def make_batches(n=30, bs=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, 10, generator=g, dtype=torch.float64), torch.randint(0, 3, (bs,), generator=g))
            for _ in range(n)]


def train(model, opt, batches):
    for xb, yb in batches:
        F.cross_entropy(model(xb), yb).backward()
        opt.step(); opt.zero_grad()
    return model


def max_diff(m1, m2): return max((p - q).abs().max().item() for p, q in zip(m1.parameters(), m2.parameters()))


def against_torch(ours, theirs, n=30, seed=0):
    "Largest parameter difference after each of `n` steps of two copies of a model, trained with `ours` and `theirs`."
    m1 = make_model(seed); m2 = copy.deepcopy(m1)
    o1, o2 = ours(m1.parameters()), theirs(m2.parameters())
    worst = 0.
    for xb, yb in make_batches(n):
        for m, o in ((m1, o1), (m2, o2)):
            F.cross_entropy(m(xb), yb).backward(); o.step(); o.zero_grad()
        worst = max(worst, max_diff(m1, m2))
    return worst

# --- against torch.optim ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('seed', [0, 1, 2])
def test_sgd_matches_torch(seed):
    assert against_torch(sgd_opt(lr=0.1), lambda ps: optim.SGD(ps, lr=0.1), seed=seed) < 1e-12


@pytest.mark.parametrize('mom', [0.5, 0.9, 0.99])
def test_sgd_momentum_matches_torch(mom):
    assert against_torch(sgd_opt(lr=0.05, mom=mom), lambda ps: optim.SGD(ps, lr=0.05, momentum=mom)) < 1e-12


def test_sgd_momentum_l2_matches_torch_weight_decay():
    ours = sgd_opt(lr=0.05, mom=0.9, wd=0.1, decouple_wd=False)
    assert against_torch(ours, lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.1)) < 1e-12


@pytest.mark.parametrize('seed', [0, 1])
def test_adam_matches_torch(seed):
    ours = adam_opt(lr=1e-2, mom=0.9, sqr_mom=0.999, eps=1e-8)
    assert against_torch(ours, lambda ps: optim.Adam(ps, lr=1e-2), seed=seed) < 1e-12


def test_adam_other_betas_match_torch():
    ours = adam_opt(lr=3e-3, mom=0.8, sqr_mom=0.99, eps=1e-6)
    assert against_torch(ours, lambda ps: optim.Adam(ps, lr=3e-3, betas=(0.8, 0.99), eps=1e-6)) < 1e-12


def test_adamw_matches_torch():
    ours = adam_opt(lr=1e-2, mom=0.9, sqr_mom=0.999, eps=1e-8, wd=0.1)
    assert against_torch(ours, lambda ps: optim.AdamW(ps, lr=1e-2, weight_decay=0.1)) < 1e-12


def test_adam_l2_matches_torch_adam_weight_decay():
    ours = adam_opt(lr=1e-2, mom=0.9, sqr_mom=0.999, eps=1e-8, wd=0.1, decouple_wd=False)
    assert against_torch(ours, lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=0.1)) < 1e-12


def test_float32_adam_first_steps_close():
    "In float32 (the precision of training), the first steps agree to rounding."
    m1 = make_model().float(); m2 = copy.deepcopy(m1)
    o1, o2 = adam_opt(lr=1e-3, sqr_mom=0.999, eps=1e-8)(m1.parameters()), optim.Adam(m2.parameters(), lr=1e-3)
    for xb, yb in make_batches(5):
        for m, o in ((m1, o1), (m2, o2)):
            F.cross_entropy(m(xb.float()), yb).backward(); o.step(); o.zero_grad()
    assert max_diff(m1, m2) < 1e-6

# --- weight decay and L2 -----------------------------------------------------------------------------------------------

def test_weight_decay_equals_l2_for_plain_sgd():
    a = against_torch(sgd_opt(lr=0.1, wd=0.05), lambda ps: optim.SGD(ps, lr=0.1, weight_decay=0.05))
    b = against_torch(sgd_opt(lr=0.1, wd=0.05, decouple_wd=False), lambda ps: optim.SGD(ps, lr=0.1, weight_decay=0.05))
    assert a < 1e-10 and b < 1e-12


@pytest.mark.parametrize('factory', [lambda **h: sgd_opt(mom=0.9, **h), adam_opt])
def test_weight_decay_differs_from_l2_with_momentum_and_adam(factory):
    batches = make_batches(20)
    m = make_model()
    m1, m2 = copy.deepcopy(m), copy.deepcopy(m)
    train(m1, factory(lr=0.01, wd=0.1)(m1.parameters()), batches)
    train(m2, factory(lr=0.01, wd=0.1, decouple_wd=False)(m2.parameters()), batches)
    assert max_diff(m1, m2) > 1e-4


def test_weight_decay_alone_shrinks_by_lr_wd():
    p = torch.ones(5, requires_grad=True)
    opt = sgd_opt(lr=0.1, wd=0.5)([p])
    p.grad = torch.zeros(5)
    for _ in range(3): opt.step()
    assert torch.allclose(p.detach(), torch.full((5,), (1 - 0.05) ** 3))


def test_l2_reg_runs_before_stats():
    "The L2 term must reach the momentum buffer, whatever the order the steppers are listed in."
    p = torch.ones(3, requires_grad=True)
    opt = StatefulOptimizer([p], [momentum_step, l2_reg], stats=AverageGrad(), lr=0.1, mom=0.9, wd=0.5)
    p.grad = torch.zeros(3)
    opt.step()
    assert torch.allclose(opt.state[p]['grad_avg'], torch.full((3,), 0.5))
    assert torch.allclose(p.detach(), torch.full((3,), 1 - 0.1 * 0.5))

# --- parameter groups --------------------------------------------------------------------------------------------------

def test_param_groups_with_different_lrs():
    m = make_model()
    opt = sgd_opt(lr=0.1)([{'params': m[0].parameters(), 'lr': 0.}, {'params': m[2].parameters()}, list(m[4].parameters())])
    assert [pg['lr'] for pg in opt.param_groups] == [0., 0.1, 0.1]
    opt.hypers[2]['lr'] = 0.5  # hypers and param_groups are the same dicts
    assert opt.param_groups[2]['lr'] == 0.5
    before = copy.deepcopy(m)
    xb, yb = make_batches(1)[0]
    F.cross_entropy(m(xb), yb).backward()
    grads = [p.grad.clone() for p in m.parameters()]
    opt.step()
    ps, ps0 = list(m.parameters()), list(before.parameters())
    assert all(torch.equal(ps[i], ps0[i]) for i in (0, 1))  # lr 0: frozen
    assert torch.allclose(ps[2], ps0[2] - 0.1 * grads[2]) and torch.allclose(ps[4], ps0[4] - 0.5 * grads[4])


def test_list_of_lists_groups_get_defaults():
    m = make_model()
    opt = adam_opt(lr=1e-3)([list(m[0].parameters()), list(m[2].parameters()) + list(m[4].parameters())])
    assert len(opt.param_groups) == 2 and len(opt.param_groups[1]['params']) == 4
    for pg in opt.param_groups:
        assert (pg['lr'], pg['mom'], pg['sqr_mom'], pg['eps'], pg['wd']) == (1e-3, 0.9, 0.99, 1e-5, 0.)


def test_overrides_at_call_time():
    m = make_model()
    opt = sgd_opt(lr=0.1, mom=0.9)(m.parameters(), lr=0.3)
    assert opt.param_groups[0]['lr'] == 0.3 and opt.param_groups[0]['mom'] == 0.9


def test_sgd_without_momentum_keeps_no_state():
    m = make_model()
    opt = sgd_opt(lr=0.1)(m.parameters())
    assert type(opt) is Optimizer and 'mom' not in opt.param_groups[0]
    train(m, opt, make_batches(2))
    assert opt.state == {}


def test_torch_layout_param_groups_match_torch():
    m1 = make_model(); m2 = copy.deepcopy(m1)
    o1 = adam_opt(lr=1e-2, sqr_mom=0.999, eps=1e-8)([{'params': m1[0].parameters(), 'lr': 1e-3}, {'params': m1[2:].parameters()}])
    o2 = optim.Adam([{'params': m2[0].parameters(), 'lr': 1e-3}, {'params': m2[2:].parameters()}], lr=1e-2)
    batches = make_batches(10)
    train(m1, o1, batches); train(m2, o2, batches)
    assert max_diff(m1, m2) < 1e-12

# --- bad hyperparameters -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('bad, msg', [(dict(lr=-0.1), 'lr must be'), (dict(mom=1.0), 'mom must be'),
                                      (dict(mom=-0.1), 'mom must be'), (dict(sqr_mom=1.5), 'sqr_mom must be'),
                                      (dict(eps=0.), 'eps must be'), (dict(wd=-1e-4), 'wd must be'),
                                      (dict(lr='0.1'), 'lr must be a number')])
def test_bad_values(bad, msg):
    with pytest.raises(ValueError, match=msg): adam_opt(**{'lr': 1e-3, **bad})
    with pytest.raises(ValueError, match=msg): adam_opt(lr=1e-3)(make_model().parameters(), **bad)


@pytest.mark.parametrize('name, hint', [('momentum', 'mom'), ('weight_decay', 'wd'), ('betas', 'sqr_mom'), ('foo', 'takes')])
def test_unknown_hyper_names(name, hint):
    with pytest.raises(ValueError, match=hint): sgd_opt(lr=0.1, **{name: 0.9})
    with pytest.raises(ValueError, match=name): adam_opt(lr=0.1)(make_model().parameters(), **{name: 0.9})


def test_optimizer_refuses_unused_hyper():
    with pytest.raises(ValueError, match="'mom'"): Optimizer(make_model().parameters(), sgd_step, lr=0.1, mom=0.9)


def test_missing_lr_and_missing_stats():
    with pytest.raises(ValueError, match='lr'): Optimizer(make_model().parameters(), sgd_step)
    with pytest.raises(ValueError, match='AverageSqrGrad'):
        StatefulOptimizer(make_model().parameters(), adam_step, stats=[AverageGrad(True), StepCount()], lr=1e-3)
    with pytest.raises(ValueError, match='statistic'):
        StatefulOptimizer(make_model().parameters(), momentum_step, stats=AverageGrad(), lr=0.1, grad_avg=1.)


def test_bad_value_set_by_a_schedule_is_caught_at_step():
    m = make_model()
    opt = sgd_opt(lr=0.1, mom=0.9)(m.parameters())
    opt.param_groups[0]['mom'] = 1.2
    F.cross_entropy(m(make_batches(1)[0][0]), make_batches(1)[0][1]).backward()
    with pytest.raises(ValueError, match='mom'): opt.step()


def test_bad_params():
    with pytest.raises(ValueError, match='empty'): sgd_opt(lr=0.1)([])
    with pytest.raises(ValueError, match='empty'): sgd_opt(lr=0.1)(iter([]))
    with pytest.raises(TypeError, match='not a tensor'): sgd_opt(lr=0.1)([[1., 2.]])
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match='twice'): sgd_opt(lr=0.1)([[p], [p]])
    with pytest.raises(ValueError, match="'params'"): sgd_opt(lr=0.1)([{'lr': 0.1}])
    with pytest.raises(ValueError, match='no steppers'): Optimizer([p], [], lr=0.1)

# --- state ------------------------------------------------------------------------------------------------------------

def test_state_kept_per_parameter():
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = adam_opt(lr=0.1)([a, b])
    a.grad, b.grad = torch.ones(3), torch.full((2,), 2.)
    opt.step()
    b.grad = None  # b gets no gradient this time: its state must not move
    a.grad = torch.ones(3)
    opt.step()
    assert opt.state[a]['step'] == 2 and opt.state[b]['step'] == 1
    assert opt.state[a]['grad_avg'].shape == (3,) and opt.state[b]['grad_avg'].shape == (2,)
    assert torch.allclose(opt.state[b]['grad_avg'], torch.full((2,), 0.2))          # (1-0.9)*2, once
    assert torch.allclose(opt.state[a]['grad_avg'], torch.full((3,), 0.1 + 0.09))    # 0.9*0.1 + 0.1*1
    assert opt.state[a]['grad_avg'] is not opt.state[b]['grad_avg']


def test_frozen_parameters_are_skipped():
    m = make_model()
    for p in m[0].parameters(): p.requires_grad_(False)
    before = copy.deepcopy(m)
    opt = adam_opt(lr=0.1)(m.parameters())
    train(m, opt, make_batches(3))
    assert all(torch.equal(p, q) for p, q in zip(m[0].parameters(), before[0].parameters()))
    assert len(opt.state) == 4


def test_state_dict_round_trip_resumes_identically():
    batches = make_batches(20)
    m1 = make_model(); o1 = adam_opt(lr=1e-2)(m1.parameters())
    train(m1, o1, batches[:10])
    m2 = copy.deepcopy(m1); o2 = adam_opt(lr=5.)(m2.parameters())  # a different lr: load_state_dict restores it
    o2.load_state_dict(copy.deepcopy(o1.state_dict()))
    assert o2.param_groups[0]['lr'] == 1e-2
    train(m1, o1, batches[10:]); train(m2, o2, batches[10:])
    assert max_diff(m1, m2) == 0


def test_load_state_dict_checks_group_sizes():
    m = make_model()
    sd = adam_opt(lr=1e-2)(m.parameters()).state_dict()
    with pytest.raises(ValueError, match='groups'): adam_opt(lr=1e-2)([list(m[0].parameters()), list(m[2].parameters())]).load_state_dict(sd)

# --- LAMB ------------------------------------------------------------------------------------------------------------

def test_lamb_one_step_by_hand():
    set_seed(0)
    w = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # an all-zero tensor: trust ratio 1
    g_w, g_z = torch.randn(4, 5, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    w0 = w.detach().clone()
    opt = lamb(lr=0.1, wd=0.01, eps=1e-6)([w, z])
    w.grad, z.grad = g_w.clone(), g_z.clone()
    opt.step()
    # step 1: debiased averages are g and g**2, so Adam's step is g/(|g| + eps)
    u = g_w / (g_w.abs() + 1e-6) + 0.01 * w0
    r = min((w0.norm() / u.norm()).item(), 10.)
    assert torch.allclose(w.detach(), w0 - 0.1 * r * u)
    assert torch.allclose(z.detach(), -0.1 * g_z / (g_z.abs() + 1e-6))


def test_lamb_trust_ratio_capped():
    w = torch.full((4,), 100., requires_grad=True)
    opt = lamb(lr=0.01, eps=1e-6)([w])
    w.grad = torch.ones(4)
    opt.step()  # ||w|| / ||u|| = 100 -> capped at 10
    assert torch.allclose(w.detach(), torch.full((4,), 100. - 0.01 * 10 * (1 / (1 + 1e-6))))


def test_zero_grad():
    m = make_model()
    opt = lamb(lr=1e-3)(m.parameters())
    F.cross_entropy(m(make_batches(1)[0][0]), make_batches(1)[0][1]).backward()
    opt.zero_grad()
    assert all(p.grad is not None and (p.grad == 0).all() for p in m.parameters())


def test_debias():
    assert debias(0.9, 0.1, 1) == pytest.approx(0.1)
    assert debias(0.9, 1., 3) == pytest.approx(1 + 0.9 + 0.81)
    assert debias(0.99, 0.01, 1000) == pytest.approx(1 - 0.99 ** 1000)

# --- with the training loop of notebooks 04-05b -------------------------------------------------------------------

def _learner(opt_func, seed=0):
    from mylib.training import Dataset, get_dls
    from mylib.training import DataBunch
    from mylib.runner import Holder
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 10, generator=g), torch.randint(0, 3, (64,), generator=g)
    data = DataBunch(*get_dls(Dataset(x[:48], y[:48]), Dataset(x[48:], y[48:]), 8), c=3)
    set_seed(seed)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    return Holder(model, opt_func(model.parameters()), F.cross_entropy, data)


def test_param_scheduler_and_recorder_drive_our_optimizer():
    from mylib.runner import Runner
    from mylib.stats import Recorder
    from mylib.schedules import ParamScheduler, sched_lin
    learn = _learner(adam_opt(lr=1e-3))
    run = Runner(cb_funcs=[Recorder, lambda: ParamScheduler('lr', sched_lin(1e-2, 0.)),
                           lambda: ParamScheduler('mom', sched_lin(0.95, 0.85))])
    run.fit(2, learn)
    n = 2 * len(learn.data.train_dl)
    assert run.recorder.lrs[0] == pytest.approx([1e-2 * (1 - k / n) for k in range(n)])
    assert run.recorder.hypers['mom'][0] == pytest.approx([0.95 - 0.1 * k / n for k in range(n)])
    assert set(run.recorder.hypers) == {'lr', 'mom', 'sqr_mom', 'eps', 'wd'}


def test_param_scheduler_refuses_a_hyper_the_optimizer_lacks():
    from mylib.runner import Runner
    from mylib.schedules import ParamScheduler, sched_lin
    with pytest.raises(KeyError, match='mom'):
        Runner(cb_funcs=[lambda: ParamScheduler('mom', sched_lin(0.9, 0.8))]).fit(1, _learner(sgd_opt(lr=0.1)))


def test_lr_find_restores_model_and_optimizer():
    from mylib.runner import Runner
    from mylib.stats import LR_Find
    learn = _learner(sgd_opt(lr=0.1, mom=0.9))
    train(learn.model, learn.opt, [(learn.data.train_ds.x[:8], learn.data.train_ds.y[:8])])  # some momentum state
    before_model = copy.deepcopy(learn.model.state_dict())
    before_opt = copy.deepcopy(learn.opt.state_dict())
    run = Runner(cb_funcs=lambda: LR_Find(max_iter=5))
    run.fit(1, learn)
    assert all(torch.equal(v, before_model[k]) for k, v in learn.model.state_dict().items())
    after = learn.opt.state_dict()
    assert after['param_groups'] == before_opt['param_groups']  # lr back at 0.1
    assert all(torch.equal(after['state'][i]['grad_avg'], s['grad_avg']) for i, s in before_opt['state'].items())
