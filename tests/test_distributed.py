"""Tests for notebook 11b: data parallelism on gloo processes started on 127.0.0.1 by the tests themselves.
Exactness (two processes on half batches end like one process on whole batches; by hand = DDP), the sampler
(against PyTorch's, over processes and epochs), DistributedTrainer (synchronised weights, statistics over all items,
the process group left after fit, also after an error), and a failing process stopping the others."""
import math, multiprocessing, subprocess, sys, time
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler as TorchDistributedSampler

from mylib.core import set_seed
from mylib.training import Dataset, DataBunch, get_dls, accuracy
from mylib.callbacks import Callback
from mylib.stats import AvgStatsCallback
from mylib.learner import Learner
from mylib.optimizers import sgd_opt
from mylib.distributed import *


def sgd_run(mode, n_steps=6, bs=32):
    "Weights of an MLP after SGD steps: 'single' on whole batches, 'by_hand'/'ddp' on this rank's half of each."
    set_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))
    g = torch.Generator().manual_seed(1)
    xs, ys = torch.randn(n_steps, bs, 12, generator=g), torch.randint(0, 3, (n_steps, bs), generator=g)
    net = nn.parallel.DistributedDataParallel(model) if mode == 'ddp' else model
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    half = slice(None) if mode == 'single' else slice(get_rank() * bs // 2, (get_rank() + 1) * bs // 2)
    for x, y in zip(xs, ys):
        F.cross_entropy(net(x[half]), y[half]).backward()
        if mode == 'by_hand':
            for p in model.parameters():
                dist.all_reduce(p.grad); p.grad /= get_world_size()
        opt.step(); opt.zero_grad()
    return [p.detach().clone() for p in model.parameters()]


def max_diff(a, b): return max((x - y).abs().max().item() for x, y in zip(a, b))


def test_two_processes_match_one():
    single = sgd_run('single')
    by_hand, ddp = run_distributed(sgd_run, 2, args=('by_hand',)), run_distributed(sgd_run, 2, args=('ddp',))
    assert max_diff(*by_hand) == 0 and max_diff(*ddp) == 0            # the copies stay identical
    assert max_diff(by_hand[0], single) < 1e-5 and max_diff(ddp[0], single) < 1e-5 and max_diff(ddp[0], by_hand[0]) < 1e-5


@pytest.mark.parametrize('n,ws', [(103, 3), (64, 2), (5, 4), (2, 3)])
def test_sampler_shards(n, ws):
    for epoch in range(3):
        ss = [DistributedSampler(n, 4, seed=7, rank=r, world_size=ws) for r in range(ws)]
        for s in ss: s.set_epoch(epoch)
        shards = [s.indices() for s in ss]
        assert set().union(*map(set, shards)) == set(range(n))
        assert all(len(sh) == math.ceil(n / ws) for sh in shards) and len({len(s) for s in ss}) == 1
        for r in range(ws):
            ts = TorchDistributedSampler(range(n), num_replicas=ws, rank=r, shuffle=True, seed=7); ts.set_epoch(epoch)
            assert shards[r] == list(ts)
        if n >= ws: assert sum(len(set(sh)) for sh in shards) >= n     # repeats only from the padding
    a, b = DistributedSampler(n, 4, seed=7, rank=0, world_size=ws), DistributedSampler(n, 4, seed=7, rank=0, world_size=ws)
    b.set_epoch(1)
    if n > 4: assert a.indices() != b.indices()                       # reshuffled between epochs


def test_sampler_validation_each_item_once():
    shards = [DistributedSampler(10, 3, shuffle=False, rank=r, world_size=4).indices() for r in range(4)]
    assert sorted(i for sh in shards for i in sh) == list(range(10))
    with pytest.raises(ValueError, match='rank'): DistributedSampler(10, 3, rank=2, world_size=2)


def tiny_learner():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, generator=g)
    xt, xv = torch.randn(40, 6, generator=g), torch.randn(21, 6, generator=g)    # 21: uneven validation shards
    data = DataBunch(*get_dls(Dataset(xt, (xt @ w).argmax(1)), Dataset(xv, (xv @ w).argmax(1)), 8), c=3)
    set_seed(0)
    return Learner(nn.Linear(6, 3), data, F.cross_entropy, opt_func=sgd_opt(), lr=0.1, cbs=[AvgStatsCallback([accuracy], show=False)])


def fit_distributed(fail=False):
    "Leave the group run_distributed made, then fit with DistributedTrainer joining it again from the environment."
    cleanup_dist()
    learn = tiny_learner()
    class Fail(Callback):
        def after_epoch(self): raise RuntimeError('boom')
    try: learn.fit(2, cbs=[DistributedTrainer(seed=3)] + ([Fail()] if fail else []))
    except RuntimeError as e: return str(e), dist.is_initialized()
    model = learn.model
    model.eval()
    with torch.no_grad():
        xv, yv = learn.data.valid_ds.x, learn.data.valid_ds.y
        acc = (model(xv).argmax(1) == yv).float().mean().item()
    return ([p.detach().clone() for p in model.parameters()], (learn.avg_stats.train_stats.count, learn.avg_stats.valid_stats.count),
            learn.avg_stats.history[-1]['valid_accuracy'], acc, dist.is_initialized(), type(model).__name__)


def test_distributed_trainer():
    res = run_distributed(fit_distributed, 2)
    (w0, count, acc, acc_all, joined, kind), (w1, *_) = res
    assert max_diff(w0, w1) == 0 and count == (40, 21) and abs(acc - acc_all) < 1e-6   # stats over all items, sharded
    assert not joined and kind == 'Linear'                                          # group left, model unwrapped
    for msg, joined in run_distributed(fit_distributed, 2, args=(True,)): assert msg == 'boom' and not joined


def test_distributed_trainer_needs_a_group():
    with pytest.raises(RuntimeError, match='torchrun'): tiny_learner().fit(1, cbs=[DistributedTrainer()])


def one_fails():
    if get_rank() == 1: raise RuntimeError('rank 1 fails on purpose')
    t = torch.ones(1)
    dist.all_reduce(t)
    return t.item()


def test_failing_process_stops_the_others():
    start = time.perf_counter()
    with pytest.raises(Exception, match='rank 1 fails on purpose'): run_distributed(one_fails, 2, timeout=20)
    assert time.perf_counter() - start < 30 and not multiprocessing.active_children() and not dist.is_initialized()


def test_exit_now_flushes_and_skips_teardown():
    "exit_now keeps what was written (stdout a pipe, so block-buffered) and exits with its code, without atexit handlers."
    code = ("import atexit, sys; from mylib.distributed import exit_now\n"
            "atexit.register(lambda: print('teardown ran'))\n"
            "print('result', end=''); sys.stderr.write('warning'); exit_now(3)")
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stdout, res.stderr) == (3, 'result', 'warning')
