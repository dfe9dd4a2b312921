"""How much does the final Learner cost on top of a plain PyTorch training loop?

The same model (notebook 06's CNN with batchnorm, channels 8-16-32-64), the same Fashion-MNIST batches (batch size
128, shuffled with the same seed), the same optimizer (`mylib.optimizers.adam_opt`, the same object type in both) and
the same one-cycle schedules for the learning rate and Adam's momentum, trained for one epoch of `--batches` batches
plus a validation pass:

  A. by `Learner.fit`, with AvgStatsCallback (loss and accuracy of every batch), Recorder, two ParamSchedulers and
     ProgressCallback in console mode, its output sent to /dev/null so the benchmark's own output stays readable
     (/dev/null is not a terminal, so the bars are not drawn; their bookkeeping and the table rows still run);
  B. by a plain loop: forward, loss, backward, step, zero_grad, the schedules set by hand before each step, and loss
     and accuracy summed over the validation pass.

Runs alternate A B A B ... after one warm-up run of each, so that a change in the machine's load hits both alike. Each
pair is printed with its ratio, and the last line is `ratio <median of the pairs' Learner/plain ratios>`. Both runs
end with identical weights, which is checked: they are the same training.

Before that it prints batches per second of `mylib.training.DataLoader` and `torch.utils.data.DataLoader` on the same
tensors. PyTorch's thread count is the library's default (`mylib.core.set_threads`: all cores, or `$MYLIB_THREADS`),
unless `--threads` sets another.

    python benchmarks/learner_overhead.py [--pairs 5] [--batches 100] [--threads N]
"""
import argparse, contextlib, gc, os, statistics, sys, time
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader as TorchDataLoader, TensorDataset, BatchSampler, RandomSampler

from mylib.core import set_seed, set_threads
from mylib.datasets import get_data
from mylib.training import Dataset, DataLoader, DataBunch, get_dls, accuracy
from mylib.stats import AvgStatsCallback, Recorder
from mylib.schedules import ParamScheduler, sched_1cycle
from mylib.learner import Learner
from mylib.conv import get_cnn_model, init_cnn
from mylib.optimizers import adam_opt
from mylib.progress import ProgressCallback

NFS, BS, LR_MAX, WD = [8, 16, 32, 64], 128, 1e-2, 1e-2


def make_model(data):
    set_seed(0)
    return init_cnn(get_cnn_model(data, NFS, bn=True))

def run_learner(data):
    "One epoch with the Learner and its usual callbacks; returns (seconds, model, validation accuracy)."
    sched_lr, sched_mom = sched_1cycle(LR_MAX)
    learn = Learner(make_model(data), data, F.cross_entropy, opt_func=adam_opt(wd=WD), lr=LR_MAX,
                    cbs=[AvgStatsCallback([accuracy]), Recorder(), ParamScheduler('lr', sched_lr),
                         ParamScheduler('mom', sched_mom), ProgressCallback(console=True)])
    with open(os.devnull, 'w') as sink, contextlib.redirect_stdout(sink):
        set_seed(1)
        start = time.perf_counter()
        learn.fit(1)
        secs = time.perf_counter() - start
    return secs, learn.model, learn.avg_stats.history[-1]['valid_accuracy']

def run_plain(data):
    "The same epoch as a plain loop; returns (seconds, model, validation accuracy)."
    model, epochs = make_model(data), 1
    sched_lr, sched_mom = sched_1cycle(LR_MAX)
    opt = adam_opt(wd=WD)([list(model.parameters())], lr=LR_MAX)
    set_seed(1)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        iters = len(data.train_dl)
        for i, (xb, yb) in enumerate(data.train_dl):
            pos = (epoch + i / iters) / epochs  # what ParamScheduler computes from TrainEvalCallback's n_epochs
            for pg in opt.param_groups: pg['lr'], pg['mom'] = sched_lr(pos), sched_mom(pos)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
        model.eval()
        with torch.no_grad():
            tot_loss, tot_acc, n = 0., 0., 0
            for xb, yb in data.valid_dl:
                pred = model(xb)
                tot_loss += F.cross_entropy(pred, yb) * len(yb)
                tot_acc += accuracy(pred, yb) * len(yb)
                n += len(yb)
            valid_loss, valid_acc = (tot_loss / n).item(), (tot_acc / n).item()
    return time.perf_counter() - start, model, valid_acc

def per_batch_costs(x, y, reps=3):
    "Microseconds per batch with a tiny model (a linear layer), where the loop's own work is what is measured."
    data = DataBunch(*get_dls(Dataset(x, y), Dataset(x[:len(x) // 8], y[:len(y) // 8]), BS), c=10)
    n = len(data.train_dl) + len(data.valid_dl)
    def plain():
        model = torch.nn.Linear(x.shape[1], 10)
        opt = adam_opt()([list(model.parameters())], lr=1e-3)
        for xb, yb in data.train_dl:
            F.cross_entropy(model(xb), yb).backward(); opt.step(); opt.zero_grad()
        with torch.no_grad():
            for xb, yb in data.valid_dl: F.cross_entropy(model(xb), yb)
    def learner(cbs):
        def _run():
            with open(os.devnull, 'w') as sink, contextlib.redirect_stdout(sink):
                Learner(torch.nn.Linear(x.shape[1], 10), data, F.cross_entropy, opt_func=adam_opt(), lr=1e-3,
                        cbs=cbs()).fit(1)
        return _run
    sched_lr, sched_mom = sched_1cycle(1e-3)
    runs = {'plain loop': plain, 'Learner, no callbacks': learner(lambda: []),
            'Learner, all five callbacks': learner(lambda: [
                AvgStatsCallback([accuracy]), Recorder(), ParamScheduler('lr', sched_lr),
                ParamScheduler('mom', sched_mom), ProgressCallback(console=True)])}
    res = {}
    for name, f in runs.items():
        best = float('inf')
        for _ in range(reps):
            start = time.perf_counter(); f(); best = min(best, time.perf_counter() - start)
        res[name] = best / n * 1e6
    return res

def batches_per_sec(dl, reps=3):
    best = float('inf')
    for _ in range(reps):
        start = time.perf_counter()
        for _ in dl: pass
        best = min(best, time.perf_counter() - start)
    return len(dl) / best

def loadavg(): return '{:.2f} {:.2f} {:.2f}'.format(*os.getloadavg())

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--pairs', type=int, default=5, help='Learner/plain pairs to time (at least 3)')
    p.add_argument('--batches', type=int, default=100, help='training batches per run (of 128 images)')
    p.add_argument('--threads', type=int, default=None, help="torch's thread count (default: mylib's, all cores)")
    args = p.parse_args(argv)
    if args.pairs < 3: p.error('--pairs must be at least 3')
    set_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} thread(s), '
          f'{os.cpu_count()} CPUs, load average {loadavg()}')

    x_train, y_train, x_valid, y_valid = get_data()
    mean, std = x_train.mean(), x_train.std()
    img = lambda x: ((x - mean) / std).view(-1, 1, 28, 28)
    n_train, n_valid = args.batches * BS, min(10_000, args.batches * BS // 4)
    xt, yt = img(x_train[:n_train]), y_train[:n_train]
    data = DataBunch(*get_dls(Dataset(xt, yt), Dataset(img(x_valid[:n_valid]), y_valid[:n_valid]), BS), c=10)
    print(f'data: {len(data.train_dl)} training batches of {BS}, {len(data.valid_dl)} validation batches of {2 * BS}; '
          f'model: CNN {NFS} with batchnorm; optimizer: adam_opt(wd={WD}), one-cycle to lr {LR_MAX}')
    print('callbacks: AvgStatsCallback, Recorder, ParamScheduler x2, ProgressCallback (console mode, output to /dev/null: '
          'bars not drawn, their bookkeeping and the table still run)')

    print('\ndata loading, same tensors, batch size 128, shuffled (batches/s, best of 3 passes):')
    loaders = {'mylib.training.DataLoader': DataLoader(Dataset(xt, yt), BS, shuffle=True),
               'torch.utils.data.DataLoader': TorchDataLoader(TensorDataset(xt, yt), batch_size=BS, shuffle=True),
               'torch DataLoader + BatchSampler': TorchDataLoader(TensorDataset(xt, yt), batch_size=None,
                                                                 sampler=BatchSampler(RandomSampler(xt), BS, False))}
    for name, dl in loaders.items(): print(f'  {name:>32}: {batches_per_sec(dl):7.0f} batches/s')

    costs = per_batch_costs(x_train[:20 * BS].view(-1, 784), y_train[:20 * BS])
    print('\nper-batch cost with a tiny model (one linear layer, batches of 128 from our DataLoader), best of 3:')
    for name, us in costs.items(): print(f'  {name:>32}: {us:6.0f} us per batch')

    t_l, m_l, acc_l = run_learner(data)  # warm-up runs (first-call allocations, caches), not counted
    t_p, m_p, acc_p = run_plain(data)
    same = all(torch.equal(a, b) for a, b in zip(m_l.state_dict().values(), m_p.state_dict().values()))
    print(f'\nwarm-up: learner {t_l:.2f} s, plain {t_p:.2f} s; identical final weights: {same}; '
          f'validation accuracy {acc_l:.4f} and {acc_p:.4f}')
    if not same: sys.exit('the two loops did not do the same training; the comparison would be meaningless')

    ratios = []
    for i in range(args.pairs):
        gc.collect(); t_l = run_learner(data)[0]
        gc.collect(); t_p = run_plain(data)[0]
        ratios.append(t_l / t_p)
        print(f'pair {i + 1}: learner {t_l:6.2f} s  plain {t_p:6.2f} s  ratio {ratios[-1]:.3f}  '
              f'({args.batches / t_l:.1f} vs {args.batches / t_p:.1f} training batches/s incl. validation; '
              f'load {loadavg()})', flush=True)
    med = statistics.median(ratios)
    print(f'load average at the end: {loadavg()}; Learner overhead {100 * (med - 1):+.1f}% '
          f'({"within" if med <= 1.05 else "OVER"} the 5% budget)')
    print(f'ratio {med:.3f}')

if __name__ == '__main__': main()
