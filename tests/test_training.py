"Edge cases and bad input for mylib.training (notebook 03)."
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mylib.core as core
from mylib.core import set_seed
from mylib.training import (DataLoader, Dataset, Sampler, accuracy, collate, fit, get_dls, log_softmax,
                            logsumexp, nll)


def make_ds(n=10, d=3):
    return Dataset(torch.arange(n * d, dtype=torch.float32).view(n, d), torch.arange(n) % 2)


def batch_indices(xb, d=3):
    "The item indices of a batch from `make_ds`: row i of its inputs starts with i*d."
    return (xb[:, 0] / d).long().tolist()


# --- log_softmax, logsumexp, nll, accuracy -------------------------------------------------------------------------

def test_log_softmax_stable_at_1000():
    x = torch.tensor([[1000., 999., 990.], [-1000., -999., -1010.], [1000., -1000., 0.]])
    naive = (x.exp() / x.exp().sum(-1, keepdim=True)).log()
    assert not torch.isfinite(naive).all()  # the naive formula really does break here
    ours = log_softmax(x)
    assert torch.isfinite(ours).all()
    core.test_near(ours, F.log_softmax(x, dim=-1))
    core.test_near(logsumexp(x), torch.logsumexp(x, -1))


def test_logsumexp_dims_and_infinities():
    set_seed(0)
    x = torch.randn(4, 5, 6) * 50
    for dim in (0, 1, -1):
        core.test_near(logsumexp(x, dim), torch.logsumexp(x, dim))
        core.test_near(logsumexp(x, dim, keepdim=True), torch.logsumexp(x, dim, keepdim=True))
    inf = float('inf')
    edge = torch.tensor([[-inf, -inf], [0., inf], [-inf, 3.]])
    core.test_eq(logsumexp(edge), torch.logsumexp(edge, -1))
    core.test_near(log_softmax(x, dim=1), F.log_softmax(x, dim=1))


def test_nll_and_cross_entropy_match_torch():
    set_seed(0)
    pred, y = torch.randn(7, 4) * 10, torch.randint(0, 4, (7,))
    core.test_near(nll(log_softmax(pred), y), F.cross_entropy(pred, y))
    core.test_near(nll(F.log_softmax(pred, -1), y), F.nll_loss(F.log_softmax(pred, -1), y))


def test_nll_and_accuracy_bad_shapes():
    with pytest.raises(ValueError, match='nll'): nll(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match='nll'): nll(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match='accuracy'): accuracy(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))
    core.test_near(accuracy(torch.tensor([[0., 1.], [2., 1.]]), torch.tensor([1, 1])), torch.tensor(0.5))


# --- Dataset, Sampler, collate, DataLoader ------------------------------------------------------------------------

def test_dataset_length_mismatch():
    with pytest.raises(ValueError, match='same length.*3.*2'): Dataset(torch.zeros(3, 2), torch.zeros(2))
    ds = make_ds()
    core.test_eq(len(ds), 10)
    xb, yb = ds[[1, 3]]
    core.test_eq(yb, torch.tensor([1, 1]))


@pytest.mark.parametrize('bs', [0, -3, 2.5, None, '4', True])
def test_bad_batch_size(bs):
    ds = make_ds()
    for make in (lambda: Sampler(ds, bs), lambda: DataLoader(ds, bs), lambda: get_dls(ds, ds, bs)):
        with pytest.raises(ValueError, match='bs must be a positive integer'): make()


def test_dataloader_sampler_options():
    ds = make_ds()
    with pytest.raises(ValueError, match='sampler'): DataLoader(ds, Sampler(ds, 2))  # the course's positional habit
    with pytest.raises(ValueError, match='not both'): DataLoader(ds, sampler=Sampler(ds, 2), shuffle=True)
    dl = DataLoader(ds, sampler=[[9, 0], [5]])  # any iterable of index lists is a sampler
    core.test_eq([batch_indices(xb) for xb, _ in dl], [[9, 0], [5]])
    core.test_eq(len(dl), 2)
    assert dl.dataset is ds


def test_sampler_order_and_partial_batch():
    s = Sampler(make_ds(), 4)
    core.test_eq(list(s), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])
    core.test_eq(len(s), 3)
    core.test_eq(list(Sampler(5, 5)), [[0, 1, 2, 3, 4]])
    core.test_eq(list(Sampler(3, 10)), [[0, 1, 2]])


def test_collate():
    xb, yb = collate([(torch.ones(2), torch.tensor(1)), (torch.zeros(2), torch.tensor(0))])
    core.test_eq(xb, torch.tensor([[1., 1.], [0., 0.]])); core.test_eq(yb, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match='empty'): collate([])


def test_get_dls_shuffles_each_epoch_and_covers_everything():
    n, bs = 103, 10
    train_ds, valid_ds = make_ds(n), make_ds(n)
    train_dl, valid_dl = get_dls(train_ds, valid_ds, bs)
    core.test_eq(len(train_dl), 11)
    set_seed(0)
    orders = []
    for epoch in range(3):
        batches = [batch_indices(xb) for xb, _ in train_dl]
        core.test_eq([len(b) for b in batches], [bs] * 10 + [3])  # last partial batch included
        flat = [i for b in batches for i in b]
        core.test_eq(sorted(flat), list(range(n)))  # every index exactly once
        orders.append(flat)
    assert orders[0] != orders[1] != orders[2] and orders[0] != list(range(n))  # shuffled, anew each epoch
    for xb, yb in train_dl:  # inputs and targets stay paired
        core.test_eq(yb, torch.tensor(batch_indices(xb)) % 2)


def test_valid_loader_in_order():
    n, bs = 103, 10
    _, valid_dl = get_dls(make_ds(n), make_ds(n), bs)
    for _ in range(2):
        batches = [batch_indices(xb) for xb, _ in valid_dl]
        core.test_eq([i for b in batches for i in b], list(range(n)))
        assert all(len(b) == 2 * bs for b in batches[:-1]) and len(batches[-1]) == n - 5 * 2 * bs


def test_matches_torch_dataloader():
    from torch.utils.data import DataLoader as TorchDataLoader
    ds = make_ds(23)
    order = torch.randperm(23).tolist()
    ours = DataLoader(ds, sampler=[order[i:i + 5] for i in range(0, 23, 5)])
    theirs = TorchDataLoader(ds, batch_size=5, sampler=order)
    for (xa, ya), (xb, yb) in zip(ours, theirs, strict=True):
        core.test_eq(xa, xb); core.test_eq(ya, yb)


# --- fit --------------------------------------------------------------------------------------------

def _fit_setup(n=40):
    set_seed(0)
    x = torch.randn(n, 4)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    return model, torch.optim.SGD(model.parameters(), 0.3), Dataset(x, y)


@pytest.mark.parametrize('epochs', [0, -1, 1.5, None])
def test_fit_bad_epochs(epochs):
    model, opt, ds = _fit_setup()
    train_dl, valid_dl = get_dls(ds, ds, 8)
    with pytest.raises(ValueError, match='epochs must be a positive integer'):
        fit(epochs, model, F.cross_entropy, opt, train_dl, valid_dl)


def test_fit_empty_loaders():
    model, opt, ds = _fit_setup()
    empty = Dataset(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    train_dl, valid_dl = get_dls(ds, ds, 8)
    with pytest.raises(ValueError, match='train_dl is empty'):
        fit(1, model, F.cross_entropy, opt, DataLoader(empty, 8), valid_dl)
    with pytest.raises(ValueError, match='valid_dl is empty'):
        fit(1, model, F.cross_entropy, opt, train_dl, DataLoader(empty, 8))
    with pytest.raises(ValueError, match='train_dl yielded no batches'):  # a loader without len()
        fit(1, model, F.cross_entropy, opt, iter([]), valid_dl)


def test_fit_trains_and_returns_history(capsys):
    model, opt, ds = _fit_setup(200)
    train_dl, valid_dl = get_dls(ds, ds, 16)
    losses = []
    hist = fit(5, model, F.cross_entropy, opt, train_dl, valid_dl, train_losses=losses)
    core.test_eq(len(hist), 5)
    core.test_eq(len(losses), 5 * len(train_dl))
    assert hist[-1][0] < hist[0][0] and hist[-1][1] > 0.8, hist
    with torch.no_grad():  # validation statistics weighted by batch size: equal to one big batch
        pred = model(ds.x)
        core.test_near(hist[-1][0], F.cross_entropy(pred, ds.y)); core.test_near(hist[-1][1], accuracy(pred, ds.y))
    assert 'valid loss' in capsys.readouterr().out


# --- worker processes ---------------------------------------------------------------------------------------------

def test_workers_give_the_same_batches_in_order():
    set_seed(0)
    ds = Dataset(torch.randn(103, 5), torch.arange(103))
    order = torch.randperm(103).tolist()
    batches = [order[i:i + 10] for i in range(0, 103, 10)]
    one, many = DataLoader(ds, sampler=batches), DataLoader(ds, sampler=batches, num_workers=3)
    got = list(many)
    assert len(got) == len(one) == 11
    for (xa, ya), (xb, yb) in zip(one, got): assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_workers_stop_cleanly_when_the_loop_breaks():
    ds = Dataset(torch.randn(500, 5), torch.arange(500))
    dl = DataLoader(ds, 10, shuffle=True, num_workers=2)
    for _ in range(3):
        xb, yb = next(iter(dl))  # the generator is closed: the workers are shut down
        assert xb.shape == (10, 5)


def test_worker_error_reaches_the_training_process():
    class Broken(Dataset):
        def __getitem__(self, i):
            if i == 7: raise KeyError('item 7 is corrupt')
            return super().__getitem__(i)
    dl = DataLoader(Broken(torch.randn(20, 2), torch.arange(20)), 4, num_workers=2)
    with pytest.raises(KeyError, match='item 7'): list(dl)


@pytest.mark.parametrize('bad', [-1, 1.5, True, '2'])
def test_bad_num_workers(bad):
    with pytest.raises(ValueError, match='num_workers'): DataLoader(Dataset(torch.zeros(4, 1), torch.zeros(4)), 2, num_workers=bad)


def test_workers_draw_different_random_numbers_and_repeat_under_a_seed():
    "Forked workers must not replay the parent's random stream: each batch gets its own, and set_seed repeats them."
    class Noisy(Dataset):
        def __getitem__(self, i): return torch.rand(1), torch.tensor(0)
    ds = Noisy(torch.zeros(40, 1), torch.zeros(40))
    def draws():
        set_seed(0)
        return torch.cat([xb for xb, _ in DataLoader(ds, 4, num_workers=2)]).squeeze(1)
    a, b = draws(), draws()
    assert torch.equal(a, b)                     # repeatable
    assert len(set(a.tolist())) == len(a)         # no two items (in any batch or worker) drew the same number
