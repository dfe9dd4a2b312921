"""A training loss that is nan or infinite: the language model's one-step last batch that made one (TAR's mean over no
pairs), and the Learner's check that stops training at such a loss with an error naming the epoch and the batch."""
import math
import pytest, torch
import torch.nn.functional as F
from torch import nn
from mylib.callbacks import Callback, CancelBatchException
from mylib.training import Dataset, DataLoader, DataBunch, get_dls
from mylib.stats import AvgStatsCallback, LR_Find, Recorder
from mylib.learner import Learner
from mylib.fp16 import MixedPrecision
from mylib.text import LM_PreLoader
from mylib.awd_lstm import get_language_model, RNNTrainer, cross_entropy_flat
from mylib.ulmfit import rnn_learner


def lm_data(bs=4, bptt=7, extra=2):
    "Language-model batches of a stream whose rows hold `2*bptt + extra` tokens: `extra=2` makes a last batch of one step."
    g = torch.Generator().manual_seed(0)
    stream = [torch.randint(0, 30, (bs * (2 * bptt + extra),), generator=g)]
    return DataBunch(DataLoader(LM_PreLoader(stream, bs, bptt, shuffle=True), bs), DataLoader(LM_PreLoader(stream, bs, bptt), bs))


class Losses(Callback):
    _order = 10  # after RNNTrainer has added AR and TAR
    def begin_fit(self): self.rec = []
    def after_loss(self):
        if self.in_train: self.rec.append((tuple(self.xb.shape), self.loss.item(), self.rnn_trainer.tar.item()))


def test_lm_preloader_can_end_on_a_one_step_batch():
    data = lm_data()
    assert [tuple(x.shape) for x, _ in data.train_dl] == [(4, 7), (4, 7), (4, 1)]


@pytest.mark.parametrize('alpha,beta', [(2., 1.), (2., 0.), (0., 1.)])
def test_one_step_batch_gives_a_finite_loss_and_no_tar(alpha, beta):
    torch.manual_seed(0)
    stats, rec = AvgStatsCallback(show=False), Losses()
    learn = rnn_learner(get_language_model(30, 8, 16, 2), lm_data(), alpha=alpha, beta=beta, cbs=[stats, rec])
    learn.fit(2)
    assert [s for s, *_ in rec.rec].count((4, 1)) == 2
    assert all(math.isfinite(l) for _, l, _ in rec.rec)
    assert all(tar == 0 for s, _, tar in rec.rec if s == (4, 1))
    assert all(math.isfinite(h['train_loss']) and math.isfinite(h['valid_loss']) for h in stats.history)


def test_tar_of_longer_batches_is_unchanged():
    torch.manual_seed(0)
    learn = rnn_learner(get_language_model(30, 8, 16, 2), lm_data(), bf16=False, cbs=[Losses()])
    class Check(Callback):
        _order = 10
        def after_loss(self):
            if not self.in_train: return
            raw = self.rnn_trainer.raw_out[-1]
            if raw.size(1) > 1:
                want = 1. * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
                assert torch.allclose(self.rnn_trainer.tar, want)
    learn.fit(1, cbs=Check())


# --- the Learner's check ---------------------------------------------------------------------------------------------

class NanLossAt(Callback):
    "The training loss of batch `iter` of epoch `epoch` (from 0) times `value` (nan or inf)."
    def __init__(self, epoch, iter, value=float('nan')): self.at, self.value = (epoch, iter), value
    def after_loss(self):
        if self.in_train and (self.epoch, self.iter) == self.at: self.run.loss = self.loss * self.value


class Ended(Callback):
    def begin_fit(self): self.ended = False
    def after_fit(self): self.ended = True


def small_data(n_train=24, bs=4):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n_train + 8, 6, generator=g), torch.randint(0, 3, (n_train + 8,), generator=g)
    return DataBunch(*get_dls(Dataset(x[:n_train], y[:n_train]), Dataset(x[n_train:], y[n_train:]), bs), c=3)


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_non_finite_training_loss_stops_with_a_clear_error(value):
    ended, seen = Ended(), []
    class Count(Callback):
        def after_batch(self):
            if self.in_train: seen.append((self.epoch, self.iter))
    learn = Learner(small_model(), small_data(), F.cross_entropy, cbs=[NanLossAt(1, 2, value), ended, Count()])
    with pytest.raises(FloatingPointError, match=r'training loss is (nan|inf) at batch 3 of 6 in epoch 2 '
                                                 r'\(inputs \(4, 6\), targets \(4,\)\).*Check:'):
        learn.fit(4)
    assert ended.ended                      # after_fit ran: callbacks cleaned up
    assert seen[-1] == (1, 1)               # the bad batch's after_batch never ran, nor any later batch


def test_finite_losses_and_validation_pass_unchanged():
    learn = Learner(small_model(), small_data(), F.cross_entropy, cbs=AvgStatsCallback(show=False))
    learn.fit(2)
    assert all(math.isfinite(h['train_loss']) for h in learn.avg_stats.history)


def test_a_batch_cancelled_before_its_loss_is_not_checked_again():
    class CancelSecond(Callback):
        def after_pred(self):
            if self.in_train and self.iter == 1: raise CancelBatchException()
    # batch 0 is fine, batch 1 is cancelled before a loss is computed: nothing to check, no error
    Learner(small_model(), small_data(), F.cross_entropy, cbs=CancelSecond()).fit(1)


def test_lr_find_still_stops_quietly_when_the_loss_turns_nan():
    learn = Learner(small_model(), small_data(n_train=200), F.cross_entropy)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    finder = LR_Find(max_iter=40, min_lr=1e-4, max_lr=1e-2)
    learn.fit(1, cbs=[finder, Recorder(), NanLossAt(0, 5)])
    assert finder.stop_reason == 'divergence'
    for k, v in learn.model.state_dict().items(): assert torch.equal(v, before[k])


def test_mixed_precision_skipping_the_step_does_not_hide_a_nan_loss():
    # float16 training skips a step whose gradients overflow; a loss that is itself nan must still stop training
    learn = Learner(small_model(), small_data(), F.cross_entropy, cbs=[MixedPrecision(), NanLossAt(0, 3)])
    with pytest.raises(FloatingPointError, match='batch 4 of 6 in epoch 1'):
        learn.fit(1)
    assert learn.mixed_precision.n_skipped == 1
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())  # after_fit gave the float32 model back
