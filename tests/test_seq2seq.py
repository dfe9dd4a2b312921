"""Notebook 13's pieces against independent oracles: the calendar, PyTorch's GRU, attention by hand, an exhaustive
search for the beam search; and the errors bad input gets."""
import datetime, math
import pytest, torch
from torch import nn
import torch.nn.functional as F
from mylib.core import set_seed
from mylib.seq2seq import (DATE_FORMATS, ordinal, format_date, date_split, date_pairs, CharVocab, iso_vocab, DateDataset,
                           seq2seq_collate, GRUCell, GRULayer, Seq2Seq, beam_search, seq_log_prob, greedy_decode)
from mylib.attention import DotAttention
from mylib.text import BOS

def test_formats_hold_the_calendar_facts():
    d = datetime.date(2024, 2, 29)  # a Thursday in a leap year
    assert format_date(d, 'long us') == 'Thursday, February 29, 2024'
    assert format_date(d, 'weekday us short') == 'Thu 02/29/24' and format_date(d, 'european dots') == '29.02.2024'
    assert format_date(datetime.date(1950, 1, 1), 'month day, yy') == 'January 1, 50'
    assert [ordinal(n) for n in (1, 2, 3, 11, 12, 13, 21, 22, 23, 111, 112)] == \
           ['1st', '2nd', '3rd', '11th', '12th', '13th', '21st', '22nd', '23rd', '111th', '112th']
    for fmt in DATE_FORMATS:  # every format keeps the day, month and year (a two-digit year by the 1950-2049 rule)
        for d in (datetime.date(1950, 1, 1), datetime.date(2049, 12, 31), datetime.date(1999, 11, 22)):
            s = format_date(d, fmt)
            assert str(d.day) in s and (str(d.year) in s or f'{d.year % 100:02d}' in s)

def test_splits_are_by_day_stable_and_disjoint():
    days = [datetime.date(1980, 1, 1) + datetime.timedelta(i) for i in range(2000)]
    splits = [date_split(d) for d in days]
    assert splits == [date_split(d) for d in days]  # no hidden state
    frac = {s: splits.count(s) / len(days) for s in ('train', 'valid', 'test')}
    assert abs(frac['train'] - 0.8) < 0.03 and abs(frac['test'] - 0.1) < 0.02
    pairs = date_pairs(days[:50], n_formats=2, seed=3)
    assert pairs == date_pairs(days[:50], n_formats=2, seed=3) and len(pairs) == 100
    assert all(p[0] == format_date(datetime.date.fromisoformat(p[1]), p[2]) for p in pairs)
    assert all(pairs[2 * i][2] != pairs[2 * i + 1][2] for i in range(50))  # two different formats per day

@pytest.mark.parametrize('ni,nh', [(3, 5), (8, 4)])
def test_gru_cell_and_layer_match_pytorch_outputs_and_gradients(ni, nh):
    set_seed(0)
    ref = nn.GRU(ni, nh, batch_first=True)
    ours = GRULayer(ni, nh)
    with torch.no_grad():
        for n in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'): getattr(ours.cell, n).copy_(getattr(ref, n + '_l0'))
    x, h0 = torch.randn(3, 7, ni, requires_grad=True), torch.randn(1, 3, nh)
    w = torch.randn(3, 7, nh)
    (o1, h1), (o2, h2) = ours(x, h0[0]), ref(x, h0)
    assert torch.allclose(o1, o2, atol=1e-6) and torch.allclose(h1, h2, atol=1e-6)
    g1 = torch.autograd.grad((o1 * w).sum(), [x, *ours.parameters()])
    g2 = torch.autograd.grad((o2 * w).sum(), [x, ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0])
    for a, b in zip(g1, g2): assert torch.allclose(a, b, atol=1e-5)
    cell_ref = nn.GRUCell(ni, nh)
    with torch.no_grad():
        for n in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'): getattr(ours.cell, n).copy_(getattr(cell_ref, n))
    assert torch.allclose(ours.cell(x[:, 0]), cell_ref(x[:, 0]), atol=1e-6)  # no state given: zeros, as PyTorch

def test_dot_attention_is_a_masked_softmax_average():
    set_seed(1)
    att, keys, h = DotAttention(4, 6), torch.randn(2, 5, 6), torch.randn(2, 4)
    mask = torch.tensor([[True, True, False, False, False], [True] * 5])
    ctx, w = att(h, keys, mask)
    q = att.q(h)
    for b in range(2):
        n = int(mask[b].sum())
        a = F.softmax(keys[b, :n] @ q[b] / math.sqrt(6), 0)
        assert torch.allclose(ctx[b], a @ keys[b, :n], atol=1e-6) and torch.allclose(w[b, :n], a, atol=1e-6)
        assert (w[b, n:] == 0).all()

def _tiny(out_len=3):
    src_vocab, tgt_vocab = CharVocab('abcdef0123 ,'), iso_vocab()
    set_seed(2)
    return src_vocab, tgt_vocab, Seq2Seq(len(src_vocab), len(tgt_vocab), emb_sz=8, nh=12, out_len=out_len, bos_idx=tgt_vocab.stoi[BOS])

def test_beam_search_is_exhaustive_with_a_wide_beam_and_greedy_with_one():
    src_vocab, tgt_vocab, model = _tiny()
    V = len(tgt_vocab)
    every = torch.cartesian_prod(*[torch.arange(V)] * 3)
    for text in ('ab 12', 'fed, 0'):
        src = src_vocab.encode(text)
        scores = seq_log_prob(model, src, every)
        best = scores.topk(4)
        s, q = beam_search(model, src, beam=V * V)
        assert torch.allclose(s[:4], best.values, atol=1e-5) and torch.equal(q[0], every[best.indices[0]])
        s1, q1 = beam_search(model, src, beam=1)
        assert torch.equal(q1[0], greedy_decode(model, [src])[0])

def test_padding_does_not_change_an_output_and_teacher_forcing_reads_the_targets():
    src_vocab, tgt_vocab, model = _tiny(out_len=4)
    model.eval()
    texts = ['a', 'abc, 12', 'f 0']
    xb, _ = seq2seq_collate([(src_vocab.encode(t), torch.zeros(4, dtype=torch.long)) for t in texts])
    out = model(xb)
    for i, t in enumerate(texts): assert torch.allclose(model(src_vocab.encode(t)[None])[0], out[i], atol=1e-5)
    tgt = torch.randint(0, len(tgt_vocab), (3, 4))
    model.pr_force = 1.
    forced = model((xb, tgt))
    model.pr_force = 0.
    tgt2 = tgt.clone(); tgt2[:, 3] = (tgt2[:, 3] + 1) % len(tgt_vocab)  # the last target is never read
    model.pr_force = 1.
    assert torch.allclose(model((xb, tgt2)), forced) and not torch.allclose(model((xb, tgt.roll(1, 1))), forced)

def test_bad_input_gets_a_clear_error():
    src_vocab, tgt_vocab, model = _tiny()
    with pytest.raises(ValueError, match='empty input'): DateDataset([('  ', '1987-03-03', 'x')], src_vocab, tgt_vocab)
    with pytest.raises(ValueError, match='no characters'): model(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match='one non-empty input'): beam_search(model, torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match='one non-empty input'): beam_search(model, torch.ones(0, dtype=torch.long))
    with pytest.raises(TypeError, match='datetime.date'): format_date('1987-03-03', 'iso')
    with pytest.raises(KeyError, match='no format'): format_date(datetime.date(1987, 3, 3), 'klingon')
    with pytest.raises(ValueError, match='nh must be even'): Seq2Seq(10, 10, nh=7)
    with pytest.raises(KeyError, match='not in the vocabulary'): iso_vocab().encode('1987/03/03')

@pytest.mark.parametrize('use_budget', [False, True])
def test_teacher_forcing_falls_over_epochs_or_over_a_time_budget(use_budget):
    from mylib.training import DataBunch, get_dls
    from mylib.callbacks import Callback
    from mylib.learner import Learner
    from mylib.optimizers import adam_opt
    from mylib.ulmfit import TimeBudget
    from mylib.seq2seq import TeacherForcing, seq_cross_entropy
    set_seed(0)
    src_vocab, tgt_vocab = CharVocab('0123456789/'), iso_vocab()
    days = [datetime.date(2000, 1, 1) + datetime.timedelta(i) for i in range(64)]
    ds = DateDataset([(format_date(d, 'us slashes'), d.isoformat()) for d in days], src_vocab, tgt_vocab)
    data = DataBunch(*get_dls(ds, ds, 16, collate_fn=seq2seq_collate))
    model = Seq2Seq(len(src_vocab), len(tgt_vocab), emb_sz=8, nh=16, bos_idx=tgt_vocab.stoi[BOS])
    seen = []
    class Spy(Callback):
        _order = 3
        def begin_batch(self):
            if self.in_train: seen.append((self.model.pr_force, isinstance(self.xb, tuple), budget.pos if budget else self.n_epochs / self.epochs))
    budget = TimeBudget(1e6) if use_budget else None
    tf = TeacherForcing(budget=budget)
    Learner(model, data, seq_cross_entropy, opt_func=adam_opt(), lr=1e-3, cbs=[tf, Spy()] + ([budget] if budget else [])).fit(2)
    assert len(seen) == 8 and all(forced for _, forced, _ in seen)
    assert all(abs(p - (1 - done)) < 1e-12 for p, _, done in seen) and model.pr_force == 0.
    if use_budget: assert seen[0][2] == 0. and seen[-1][2] < 1e-3  # the share of a million seconds used
    else: assert [round(d, 3) for _, _, d in seen] == [0., 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875]
