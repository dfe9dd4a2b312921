"""Tests for notebook 10b: LabelSmoothingCrossEntropy against PyTorch, reduce_loss and NoneReduce, and the MixUp callback
(per-sample λ checked by hand, mixing only in training, the loss function restored after fit, cancelled or failed)."""
import math
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mylib.core import set_seed
from mylib.training import Dataset, DataBunch, get_dls
from mylib.callbacks import Callback, CancelTrainException, CancelEpochException
from mylib.learner import Learner
from mylib.optimizers import sgd_opt
from mylib.regularization import *


def make_data(n_train=40, n_valid=16, bs=8, n_in=6, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_in, c, generator=g)
    xt, xv = torch.randn(n_train, n_in, generator=g), torch.randn(n_valid, n_in, generator=g)
    return DataBunch(*get_dls(Dataset(xt, (xt @ w).argmax(1)), Dataset(xv, (xv @ w).argmax(1)), bs), c=c)

def make_learner(loss_func=F.cross_entropy, cbs=None, data=None):
    set_seed(0)
    data = data or make_data()
    return Learner(nn.Linear(6, 3), data, loss_func, opt_func=sgd_opt(), lr=0.1, cbs=cbs)

class Spy(Callback):
    "Records each batch: inputs before mixing (order 0), then inputs, predictions, loss and MixUp's λ and permutation."
    def begin_fit(self): self.rec = []
    def begin_batch(self): self.rec.append({'train': self.in_train, 'x0': self.xb.clone(), 'y': self.yb.clone()})
    def after_loss(self):
        mu = self.run.mix_up
        self.rec[-1].update(x=self.xb.clone(), pred=self.pred.detach().clone(), loss=self.loss.item(),
                            lam=None if mu.lam is None or not self.in_train else mu.lam.clone(),
                            perm=None if mu.perm is None or not self.in_train else mu.perm.clone())

class RaiseAt(Callback):
    def __init__(self, exc, event='after_loss'): self.exc = exc; setattr(self, event, self._raise)
    def _raise(self):
        if self.in_train and self.iter == 1: raise self.exc('stop')

# --- label smoothing ---

@pytest.mark.parametrize('reduction', ['mean', 'sum', 'none'])
@pytest.mark.parametrize('eps', [0., 0.1, 0.25])
def test_label_smoothing_matches_torch(reduction, eps):
    set_seed(1)
    pred = torch.randn(20, 7, requires_grad=True)
    y = torch.randint(0, 7, (20,))
    ours = LabelSmoothingCrossEntropy(eps, reduction)(pred, y)
    theirs = F.cross_entropy(pred, y, label_smoothing=eps, reduction=reduction)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs)
    g1, = torch.autograd.grad(ours.sum(), pred)
    g2, = torch.autograd.grad(theirs.sum(), pred)
    torch.testing.assert_close(g1, g2)

def test_label_smoothing_hand_value():
    "Two classes, logits (0, 0): -log p = log 2 for both, so the loss is log 2 whatever eps."
    out = LabelSmoothingCrossEntropy(0.3)(torch.zeros(1, 2), torch.tensor([1]))
    assert math.isclose(out.item(), math.log(2), rel_tol=1e-6)

@pytest.mark.parametrize('kw, match', [(dict(eps=1.0), 'eps'), (dict(eps=-0.1), 'eps'), (dict(eps=True), 'eps'),
                                       (dict(eps='0.1'), 'eps'), (dict(reduction='avg'), 'reduction')])
def test_label_smoothing_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match): LabelSmoothingCrossEntropy(**kw)

def test_label_smoothing_bad_targets():
    lf, pred = LabelSmoothingCrossEntropy(), torch.randn(4, 3)
    with pytest.raises(ValueError, match='class indices'): lf(pred, F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float())
    with pytest.raises(ValueError, match='class indices'): lf(pred, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match='3 classes'): lf(pred, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match='3 classes'): lf(pred, torch.tensor([0, -1, 2, 0]))
    with pytest.raises(ValueError, match=r'\(batch, classes\)'): lf(torch.randn(4), torch.tensor([0, 1, 2, 0]))

# --- reduce_loss and NoneReduce ---

def test_reduce_loss():
    l = torch.tensor([1., 2., 6.])
    assert reduce_loss(l).item() == 3. and reduce_loss(l, 'sum').item() == 9. and reduce_loss(l, 'none') is l
    with pytest.raises(ValueError, match='reduction'): reduce_loss(l, 'max')

def test_none_reduce_attribute_restored_also_on_error():
    lf = nn.CrossEntropyLoss(reduction='sum')
    pred, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    with NoneReduce(lf) as f: assert f(pred, y).shape == (5,)
    assert lf.reduction == 'sum'
    with pytest.raises(KeyError):
        with NoneReduce(lf): raise KeyError('inside')
    assert lf.reduction == 'sum'

def test_none_reduce_keyword_and_missing_reduction():
    pred, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    with NoneReduce(F.cross_entropy) as f: torch.testing.assert_close(f(pred, y), F.cross_entropy(pred, y, reduction='none'))
    def my_loss(pred, y): return F.cross_entropy(pred, y)
    with pytest.raises(TypeError, match='reduction'):
        with NoneReduce(my_loss): pass

# --- MixUp ---

@pytest.mark.parametrize('alpha', [0, 0., -0.4, float('nan'), float('inf'), None, '0.4', True])
def test_mixup_bad_alpha(alpha):
    with pytest.raises(ValueError, match='alpha must be a finite number > 0'): MixUp(alpha)

def test_mixup_per_sample_lambda_by_hand():
    "Every training batch: xb mixed with each sample's own λ, and the loss equal to a sample-by-sample hand computation."
    learn = make_learner(cbs=[MixUp(0.4), Spy()])
    learn.fit(2)
    train = [r for r in learn.spy.rec if r['train']]
    assert len(train) == 10
    for r in train:
        lam, perm, x0, y = r['lam'], r['perm'], r['x0'], r['y']
        assert lam.shape == (len(y),) and (lam >= 0.5).all() and (lam <= 1).all()
        assert sorted(perm.tolist()) == list(range(len(y)))
        for i in range(len(y)):
            torch.testing.assert_close(r['x'][i], lam[i] * x0[i] + (1 - lam[i]) * x0[perm[i]])
        hand = sum(lam[i].item() * F.cross_entropy(r['pred'][i], y[i]).item()
                   + (1 - lam[i].item()) * F.cross_entropy(r['pred'][i], y[perm[i]]).item() for i in range(len(y))) / len(y)
        assert math.isclose(r['loss'], hand, rel_tol=1e-5)
    assert any(len(r['lam'].unique()) > 1 for r in train)  # not one λ per batch

def test_mixup_differs_from_batch_mean_lambda():
    "The per-sample loss is not what the (bs,1,...) broadcast would give (the average λ for every sample)."
    learn = make_learner(cbs=[MixUp(0.4), Spy()])
    learn.fit(1)
    r = next(r for r in learn.spy.rec if r['train'])
    l1 = F.cross_entropy(r['pred'], r['y'], reduction='none')
    l2 = F.cross_entropy(r['pred'], r['y'][r['perm']], reduction='none')
    wrong = (r['lam'].mean() * l1 + (1 - r['lam'].mean()) * l2).mean().item()
    right = (r['lam'] * l1 + (1 - r['lam']) * l2).mean().item()
    assert math.isclose(r['loss'], right, rel_tol=1e-5) and not math.isclose(right, wrong, rel_tol=1e-4)

def test_mixup_only_while_training():
    learn = make_learner(cbs=[MixUp(1.0), Spy()])
    learn.fit(2)
    valid = [r for r in learn.spy.rec if not r['train']]
    assert len(valid) == 2 * 1  # 16 items in batches of 16, two epochs
    for r in valid:
        assert torch.equal(r['x'], r['x0'])
        assert math.isclose(r['loss'], F.cross_entropy(r['pred'], r['y']).item(), rel_tol=1e-6)

def test_mixup_with_label_smoothing_and_sum_reduction():
    lf = LabelSmoothingCrossEntropy(0.1, reduction='sum')
    learn = make_learner(loss_func=lf, cbs=[MixUp(0.4), Spy()])
    learn.fit(1)
    assert learn.loss_func is lf and lf.reduction == 'sum'
    r = next(r for r in learn.spy.rec if r['train'])
    lam, perm, y = r['lam'], r['perm'], r['y']
    hand = sum(lam[i] * F.cross_entropy(r['pred'][i:i+1], y[i:i+1], label_smoothing=0.1)
               + (1 - lam[i]) * F.cross_entropy(r['pred'][i:i+1], y[perm[i]:perm[i]+1], label_smoothing=0.1)
               for i in range(len(y)))
    assert math.isclose(r['loss'], hand.item(), rel_tol=1e-5)

def test_loss_func_restored_after_fit_and_second_fit():
    learn = make_learner(cbs=MixUp(0.4))
    learn.fit(1)
    assert learn.loss_func is F.cross_entropy
    learn.fit(1)
    assert learn.loss_func is F.cross_entropy and learn.mix_up.lam is None

def test_loss_func_restored_for_a_one_fit_callback():
    learn = make_learner()
    seen = []
    class Look(Callback):
        def after_loss(self): seen.append(self.run.loss_func)
    learn.fit(1, cbs=[MixUp(0.4), Look()])
    assert learn.loss_func is F.cross_entropy and all(f is not F.cross_entropy for f in seen)

@pytest.mark.parametrize('exc, event', [(CancelTrainException, 'after_loss'), (CancelTrainException, 'begin_batch'),
                                        (RuntimeError, 'after_loss'), (RuntimeError, 'after_backward'),
                                        (CancelEpochException, 'after_loss')])
def test_loss_func_restored_when_fit_is_cancelled_or_raises(exc, event):
    lf = LabelSmoothingCrossEntropy(0.1)
    learn = make_learner(loss_func=lf, cbs=MixUp(0.4))
    if exc is RuntimeError:
        with pytest.raises(RuntimeError, match='stop'): learn.fit(2, cbs=RaiseAt(exc, event))
    else: learn.fit(2, cbs=RaiseAt(exc, event))
    assert learn.loss_func is lf and lf.reduction == 'mean'

def test_fit_failing_before_mixup_begin_fit_leaves_loss_alone():
    class FailEarly(Callback):
        _order = -1
        def begin_fit(self): raise RuntimeError('early')
    learn = make_learner(cbs=MixUp(0.4))
    with pytest.raises(RuntimeError, match='early'): learn.fit(1, cbs=FailEarly())
    assert learn.loss_func is F.cross_entropy

def test_two_mixups_refused():
    learn = make_learner()
    with pytest.raises(ValueError, match='two MixUp'): learn.fit(1, cbs=[MixUp(0.4), MixUp(0.2)])
    assert learn.loss_func is F.cross_entropy

def test_mixup_refuses_loss_without_per_sample_shape():
    class MeanAlways(nn.Module):
        reduction = 'mean'
        def forward(self, pred, y): return F.cross_entropy(pred, y)  # ignores its reduction
    learn = make_learner(loss_func=MeanAlways(), cbs=MixUp(0.4))
    with pytest.raises(ValueError, match='one loss per sample'): learn.fit(1)
    assert isinstance(learn.loss_func, MeanAlways)

def test_mixup_on_images_seeded():
    "4-d image batches: the same seed gives the same λ and the same mixed batch."
    def run():
        set_seed(3)
        x, y = torch.randn(24, 1, 4, 4), torch.randint(0, 3, (24,))
        data = DataBunch(*get_dls(Dataset(x, y), Dataset(x[:8], y[:8]), 8), c=3)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        learn = Learner(model, data, F.cross_entropy, opt_func=sgd_opt(), lr=0.1, cbs=[MixUp(0.4), Spy()])
        learn.fit(1)
        return [r['x'] for r in learn.spy.rec if r['train']]
    a, b = run(), run()
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and a[0].shape == (8, 1, 4, 4)
