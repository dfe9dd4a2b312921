"""Tests for notebook 12a: the LSTM from scratch against nn.LSTM, the three dropouts (WeightDropout really changing what
nn.LSTM computes, with gradients reaching the raw weight, and surviving state_dict, save/load, deepcopy), AWD_LSTM's
carried and detached state, weight tying, the flat loss and metric, and the RNNTrainer / GradientClipping callbacks."""
import copy, io, math, pickle, warnings
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mylib.core import set_seed
from mylib.training import Dataset, DataLoader, DataBunch
from mylib.callbacks import Callback
from mylib.learner import Learner
from mylib.optimizers import sgd_opt, adam_opt
from mylib.stats import AvgStatsCallback
from mylib.awd_lstm import *


def close(a, b, atol=1e-5, rtol=1e-4): torch.testing.assert_close(a, b, atol=atol, rtol=rtol)

# --- LSTM from scratch ---

def copy_cell(cell, ref):
    with torch.no_grad():
        cell.ih.weight.copy_(ref.weight_ih); cell.ih.bias.copy_(ref.bias_ih)
        cell.hh.weight.copy_(ref.weight_hh); cell.hh.bias.copy_(ref.bias_hh)

def test_lstm_cell_matches_torch():
    set_seed(0)
    ref, cell = nn.LSTMCell(4, 5), LSTMCell(4, 5)
    copy_cell(cell, ref)
    x = torch.randn(3, 4, requires_grad=True)
    h0, c0 = torch.randn(3, 5, requires_grad=True), torch.randn(3, 5, requires_grad=True)
    (h1, c1), (h2, c2) = cell(x, (h0, c0)), ref(x, (h0, c0))
    close(h1, h2); close(c1, c2)
    r = torch.randn(2, 3, 5)
    g1 = torch.autograd.grad((r[0] * h1 + r[1] * c1).sum(), [x, h0, c0, cell.ih.weight, cell.hh.weight, cell.ih.bias])
    g2 = torch.autograd.grad((r[0] * h2 + r[1] * c2).sum(), [x, h0, c0, ref.weight_ih, ref.weight_hh, ref.bias_ih])
    for a, b in zip(g1, g2): close(a, b)

@pytest.mark.parametrize('with_state', [True, False])
def test_lstm_layer_matches_torch(with_state):
    set_seed(1)
    ref = nn.LSTM(4, 6, batch_first=True)
    layer = LSTMLayer.from_lstm(ref)
    x = torch.randn(2, 9, 4, requires_grad=True)
    h0, c0 = torch.randn(2, 6, requires_grad=True), torch.randn(2, 6, requires_grad=True)
    out1, (h1, c1) = layer(x, (h0, c0)) if with_state else layer(x)
    out2, (h2, c2) = ref(x, (h0[None], c0[None])) if with_state else ref(x)
    assert out1.shape == (2, 9, 6) and h1.shape == c1.shape == (2, 6)
    close(out1, out2); close(h1, h2[0]); close(c1, c2[0])
    r, rh, rc = torch.randn_like(out1), torch.randn(2, 6), torch.randn(2, 6)
    wrt1 = [x, layer.cell.ih.weight, layer.cell.hh.weight, layer.cell.ih.bias, layer.cell.hh.bias]
    wrt2 = [x, ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0]
    if with_state: wrt1 += [h0, c0]; wrt2 += [h0, c0]
    g1 = torch.autograd.grad((r * out1).sum() + (rh * h1).sum() + (rc * c1).sum(), wrt1)
    g2 = torch.autograd.grad((r * out2).sum() + (rh * h2[0]).sum() + (rc * c2[0]).sum(), wrt2)
    for a, b in zip(g1, g2): close(a, b)

def test_lstm_layer_from_lstm_copies_and_refuses_others():
    ref = nn.LSTM(3, 4, batch_first=True)
    layer = LSTMLayer.from_lstm(ref)
    with torch.no_grad(): ref.weight_hh_l0.add_(1.)  # a copy: the layer does not follow
    assert not torch.equal(layer.cell.hh.weight, ref.weight_hh_l0)
    assert LSTMLayer.from_lstm(nn.LSTM(3, 4).double()).cell.hh.weight.dtype == torch.float64
    for bad in (nn.LSTM(3, 4, 2), nn.LSTM(3, 4, bidirectional=True), nn.LSTM(3, 4, bias=False), nn.LSTM(3, 4, proj_size=2)):
        with pytest.raises(ValueError, match='one-layer'): LSTMLayer.from_lstm(bad)

def test_lstm_layer_bad_input():
    layer = LSTMLayer(3, 4)
    with pytest.raises(ValueError, match=r'\(batch, seq, 3\)'): layer(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r'\(batch, seq, 3\)'): layer(torch.randn(2, 5, 4))

# --- dropout_mask and RNNDropout ---

def test_dropout_mask_values_and_shape():
    set_seed(2)
    x = torch.randn(3, 3, dtype=torch.float64)
    m = dropout_mask(x, (1000, 7), 0.3)
    assert m.shape == (1000, 7) and m.dtype == torch.float64
    assert set(m.unique().tolist()) <= {0., 1 / 0.7}
    assert abs((m == 0).double().mean().item() - 0.3) < 0.02
    assert torch.equal(dropout_mask(x, (4,), 0.), torch.ones(4, dtype=torch.float64))

@pytest.mark.parametrize('p', [1, 1.0, -0.1, True, '0.5', None])
def test_probabilities_checked(p):
    for make in (lambda: dropout_mask(torch.ones(1), (2,), p), lambda: RNNDropout(p),
                 lambda: WeightDropout(nn.LSTM(2, 2), p), lambda: EmbeddingDropout(nn.Embedding(3, 2), p),
                 lambda: AWD_LSTM(10, 4, 6, 2, input_p=p)):
        with pytest.raises(ValueError, match='0 <= .* < 1'): make()

def test_rnn_dropout_one_mask_per_sequence():
    set_seed(3)
    dp = RNNDropout(0.5)
    out = dp(torch.ones(6, 11, 20))
    assert torch.equal(out, out[:, :1].expand_as(out))  # the same at every step
    assert set(out.unique().tolist()) == {0., 2.}
    assert not torch.equal(out[0], out[1])              # but a mask per sequence
    x = torch.randn(2, 3, 4)
    assert dp.eval()(x) is x
    assert RNNDropout(0.)(x) is x

def test_rnn_dropout_gradient_and_bad_shape():
    set_seed(4)
    x = torch.randn(2, 5, 3, requires_grad=True)
    out = RNNDropout(0.5)(x)
    out.sum().backward()
    mask = out.detach() / x.detach()
    close(x.grad, mask)
    with pytest.raises(ValueError, match=r'\(batch, seq, n\)'): RNNDropout(0.5)(torch.randn(4, 3))

# --- WeightDropout ---

def make_wd(p=0.5, seed=5, ni=4, nh=5):
    set_seed(seed)
    base = nn.LSTM(ni, nh, batch_first=True)
    plain = copy.deepcopy(base)
    return WeightDropout(base, p), plain

def test_weight_dropout_changes_the_lstm_output_exactly_as_a_hand_set_weight():
    wd, plain = make_wd()
    raw = wd.weight_hh_l0_raw.detach().clone()
    x = torch.randn(3, 8, 4)
    set_seed(10); out, (h, c) = wd(x)
    set_seed(10); mask = dropout_mask(raw, raw.shape, 0.5)
    by_hand = copy.deepcopy(plain)
    with torch.no_grad(): by_hand.weight_hh_l0.copy_(raw * mask)
    out_hand, (h_hand, c_hand) = by_hand(x)
    assert (out - plain(x)[0]).abs().max() > 1e-3          # really dropped
    close(out, out_hand); close(h, h_hand); close(c, c_hand)
    set_seed(11); out2 = wd(x)[0]
    assert not torch.allclose(out, out2)                   # a new mask each call

def test_weight_dropout_gradient_reaches_raw_weight():
    p = 0.4
    wd, plain = make_wd(p)
    raw = wd.weight_hh_l0_raw.detach().clone()
    x = torch.randn(3, 8, 4)
    set_seed(12); out = wd(x)[0]
    set_seed(12); mask01 = (dropout_mask(raw, raw.shape, p) != 0).float()
    by_hand = copy.deepcopy(plain)
    with torch.no_grad(): by_hand.weight_hh_l0.copy_(raw * mask01 / (1 - p))
    r = torch.randn_like(out)
    (r * out).sum().backward()
    (r * by_hand(x)[0]).sum().backward()
    g = wd.weight_hh_l0_raw.grad
    assert g is not None and g.abs().sum() > 0
    close(g, mask01 * by_hand.weight_hh_l0.grad / (1 - p))
    assert (g[mask01 == 0] == 0).all()
    close(wd.module.weight_ih_l0.grad, by_hand.weight_ih_l0.grad)  # the other weights learn as usual

def test_weight_dropout_eval_uses_raw_weights():
    wd, plain = make_wd()
    x = torch.randn(2, 6, 4)
    wd.eval()
    close(wd(x)[0], plain(x)[0])
    out = wd(x)[0]
    out.sum().backward()                                     # gradients flow in eval too
    assert wd.weight_hh_l0_raw.grad.abs().sum() > 0

def test_weight_dropout_parameters_and_between_calls():
    wd, _ = make_wd()
    names = [n for n, _ in wd.named_parameters()]
    assert names == ['weight_hh_l0_raw', 'module.weight_ih_l0', 'module.bias_ih_l0', 'module.bias_hh_l0']
    wd(torch.randn(2, 3, 4))
    assert wd.module.weight_hh_l0 is None                    # nothing autograd-made is kept between calls
    assert 'weight_hh_l0' not in dict(wd.module.named_parameters())

def test_weight_dropout_optimizer_updates_raw():
    wd, _ = make_wd()
    before = wd.weight_hh_l0_raw.detach().clone()
    opt = torch.optim.SGD(wd.parameters(), lr=0.1)
    wd(torch.randn(2, 5, 4))[0].pow(2).sum().backward()
    opt.step()
    assert not torch.equal(wd.weight_hh_l0_raw.detach(), before)

def test_weight_dropout_no_warnings_on_cpu():
    wd, _ = make_wd()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        wd(torch.randn(2, 5, 4))[0].sum().backward()
        wd.eval()(torch.randn(2, 5, 4))

def test_weight_dropout_several_layers_and_str_name():
    set_seed(6)
    wd = WeightDropout(nn.LSTM(3, 4, 2, batch_first=True), 0.5, ['weight_hh_l0', 'weight_hh_l1'])
    assert {'weight_hh_l0_raw', 'weight_hh_l1_raw'} <= set(dict(wd.named_parameters()))
    wd(torch.randn(2, 5, 3))[0].sum().backward()
    assert wd.weight_hh_l1_raw.grad.abs().sum() > 0
    assert WeightDropout(nn.LSTM(3, 4), 0.5, 'weight_hh_l0').layer_names == ['weight_hh_l0']

def test_weight_dropout_unknown_weight():
    with pytest.raises(ValueError, match="no parameter 'weight_hh_l1'.*weight_hh_l0"):
        WeightDropout(nn.LSTM(3, 4), 0.5, 'weight_hh_l1')

def test_weight_dropout_state_dict_save_load_deepcopy_pickle(tmp_path):
    wd, _ = make_wd()
    x = torch.randn(2, 5, 4)
    wd(x)  # a training call first: nothing of it may end up in the state
    assert list(wd.state_dict()) == ['weight_hh_l0_raw', 'module.weight_ih_l0', 'module.bias_ih_l0', 'module.bias_hh_l0']
    torch.save(wd.state_dict(), tmp_path/'wd.pth')
    wd2 = WeightDropout(nn.LSTM(4, 5, batch_first=True), 0.5)
    wd2.load_state_dict(torch.load(tmp_path/'wd.pth', weights_only=True))
    wd.eval(); wd2.eval()
    assert torch.equal(wd(x)[0], wd2(x)[0])
    assert torch.equal(copy.deepcopy(wd)(x)[0], wd(x)[0])
    assert torch.equal(pickle.loads(pickle.dumps(wd))(x)[0], wd(x)[0])

def test_weight_dropout_dtype_change():
    wd, plain = make_wd()
    wd.double(); plain.double(); wd.eval()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    close(wd(x)[0], plain(x)[0])

# --- EmbeddingDropout ---

def test_embedding_dropout_drops_whole_words():
    set_seed(7)
    emb = nn.Embedding(12, 5, padding_idx=1)
    ed = EmbeddingDropout(emb, 0.5)
    words = torch.arange(12).repeat(4, 1)  # every word, in four rows
    out = ed(words).detach()
    ratio = out / emb.weight.detach()[words]
    for w in range(12):
        if w == 1: continue                       # the padding row is zero
        vals = ratio[words == w].unique()
        assert len(vals) == 1 and vals.item() in (0., 2.)
    kept = [w for w in range(12) if w != 1 and ratio[words == w][0, 0] != 0]
    assert 0 < len(kept) < 11

def test_embedding_dropout_padding_eval_and_stored_weights():
    set_seed(8)
    emb = nn.Embedding(10, 4, padding_idx=1)
    stored = emb.weight.detach().clone()
    ed = EmbeddingDropout(emb, 0.3)
    words = torch.randint(0, 10, (5, 7)); words[0, :3] = 1
    ed(words).pow(2).sum().backward()
    assert torch.equal(emb.weight.grad[1], torch.zeros(4))
    assert torch.equal(emb.weight.detach(), stored)
    assert torch.equal(ed.eval()(words), emb(words))
    assert torch.equal(emb.weight.detach(), stored)

def test_embedding_dropout_refuses():
    with pytest.raises(TypeError, match='nn.Embedding'): EmbeddingDropout(nn.Linear(3, 4), 0.1)
    with pytest.raises(ValueError, match='max_norm'): EmbeddingDropout(nn.Embedding(5, 3, max_norm=1.), 0.1)

# --- AWD_LSTM ---

def test_awd_lstm_shapes_and_state():
    set_seed(9)
    awd = AWD_LSTM(50, 6, 10, 3)
    raw, out = awd(torch.randint(0, 50, (4, 7)))
    assert [o.shape for o in raw] == [o.shape for o in out] == [(4, 7, 10), (4, 7, 10), (4, 7, 6)]
    assert out[-1] is raw[-1]                     # the last layer's dropout is the decoder's
    assert all(not t.requires_grad and t.grad_fn is None for state in awd.hidden for t in state)
    assert [h.shape for h, c in awd.hidden] == [(1, 4, 10), (1, 4, 10), (1, 4, 6)]
    assert len(awd.rnns) == 3 and all(isinstance(r, WeightDropout) for r in awd.rnns)
    assert [r.module.batch_first for r in awd.rnns] == [True] * 3

def test_awd_lstm_one_layer():
    awd = AWD_LSTM(20, 6, 10, 1)
    raw, out = awd(torch.randint(0, 20, (2, 5)))
    assert [o.shape for o in raw] == [(2, 5, 6)]

def test_awd_lstm_carries_state_reset_and_batch_size_change():
    set_seed(10)
    awd = AWD_LSTM(30, 6, 8, 2).eval()
    x = torch.randint(0, 30, (3, 12))
    with torch.no_grad():
        awd.reset(); whole = awd(x)[0][-1]
        awd.reset(); halves = torch.cat([awd(x[:, :6])[0][-1], awd(x[:, 6:])[0][-1]], 1)
        close(halves, whole)
        awd.reset(); fresh = awd(x[:, :6])[0][-1]
        assert not torch.allclose(awd(x[:, :6])[0][-1], fresh)   # carried: not from zeros
        awd.reset(); assert torch.equal(awd(x[:, :6])[0][-1], fresh)
        other = awd(x[:2, :6])[0][-1]                            # another batch size: from zeros
        assert torch.equal(other, fresh[:2])

def test_awd_lstm_truncated_bptt_backward_twice():
    set_seed(11)
    awd = AWD_LSTM(30, 6, 8, 2)
    x = torch.randint(0, 30, (3, 6))
    awd(x)[1][-1].sum().backward()
    awd(x)[1][-1].sum().backward()  # would fail if the state kept the first batch's graph

def test_awd_lstm_embedding_init():
    awd = AWD_LSTM(500, 16, 8, 2, pad_token=3)
    w = awd.emb.weight.detach()
    assert w.abs().max() <= 0.1 and w.abs().max() > 0.09
    assert torch.equal(w[3], torch.zeros(16)) and awd.emb.padding_idx == 3
    assert awd.emb_dp.emb is awd.emb

@pytest.mark.parametrize('bad, match', [
    (torch.zeros(2, 5), 'LongTensor'), (torch.zeros(5, dtype=torch.long), 'LongTensor'),
    (torch.tensor([[0, 30]]), 'from 0 to 29'), (torch.tensor([[-1, 3]]), 'from 0 to 29'), ([[1, 2]], 'LongTensor')])
def test_awd_lstm_bad_input(bad, match):
    with pytest.raises(ValueError, match=match): AWD_LSTM(30, 6, 8, 2)(bad)

def test_awd_lstm_bad_pad_token_and_layers():
    with pytest.raises(ValueError, match='pad_token'): AWD_LSTM(30, 6, 8, 2, pad_token=30)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match='n_layers'): AWD_LSTM(30, 6, 8, bad)

# --- decoder, tying, SequentialRNN, get_language_model ---

def test_tied_decoder_is_the_embedding():
    set_seed(12)
    lm = get_language_model(40, 6, 8, 2)
    enc, dec = lm
    assert dec.decoder.weight is enc.emb.weight
    assert dec.decoder.weight.data_ptr() == enc.emb.weight.data_ptr()
    assert sum(p is enc.emb.weight for p in lm.parameters()) == 1
    decoded, raw, out = lm(torch.randint(0, 40, (2, 5)))
    assert decoded.shape == (2, 5, 40)
    decoded.sum().backward()
    assert enc.emb.weight.grad is dec.decoder.weight.grad

def test_tied_gradient_is_the_sum_of_both_uses():
    set_seed(13)
    lm = get_language_model(40, 6, 8, 2, drop_mult=0.).eval()
    untied = get_language_model(40, 6, 8, 2, drop_mult=0., tie_weights=False).eval()
    untied.load_state_dict({k: v for k, v in lm.state_dict().items()})  # the same values in two tensors
    x, y = torch.randint(0, 40, (3, 6)), torch.randint(0, 40, (3, 6))
    cross_entropy_flat(lm(x)[0], y).backward()
    cross_entropy_flat(untied(x)[0], y).backward()
    close(lm[0].emb.weight.grad, untied[0].emb.weight.grad + untied[1].decoder.weight.grad)

def test_decoder_outputs_and_dropout():
    set_seed(14)
    dec = LinearDecoder(20, 6, 0.5)
    raw = [torch.randn(2, 4, 9), torch.randn(2, 4, 6)]
    outs = [raw[0] * 2, raw[1]]
    decoded, r, o = dec((raw, outs))
    assert decoded.shape == (2, 4, 20) and r is raw and o[0] is outs[0]
    ratio = o[1] / outs[1]
    assert not torch.equal(o[1], outs[1]) and torch.allclose(ratio, ratio[:, :1].expand_as(ratio))  # one mask per sequence
    close(decoded, dec.decoder(o[1]))            # decoded from what the decoder saw
    dec.eval()
    decoded, r, o = dec((raw, outs))
    assert torch.equal(o[1], outs[1])
    with pytest.raises(ValueError, match='tie'): LinearDecoder(20, 6, 0.1, tie_encoder=nn.Embedding(20, 5))

def test_untied_decoder_init():
    dec = LinearDecoder(30, 6, 0.1)
    assert dec.decoder.weight.abs().max() <= 0.1 and torch.equal(dec.decoder.bias, torch.zeros(30))
    assert LinearDecoder(30, 6, 0.1, bias=False).decoder.bias is None

def test_sequential_rnn_reset():
    class R(nn.Module):
        n = 0
        def reset(self): self.n += 1
        def forward(self, x): return x
    a, b = R(), R()
    m = SequentialRNN(a, nn.Identity(), b)
    m.reset()
    assert (a.n, b.n) == (1, 1)

def test_get_language_model_drop_mult_and_untied():
    lm = get_language_model(30, 6, 8, 2, output_p=0.4, hidden_p=0.2, input_p=0.6, embed_p=0.1, weight_p=0.5, drop_mult=0.5)
    enc, dec = lm
    assert math.isclose(dec.output_dp.p, 0.2) and math.isclose(enc.hidden_dps[0].p, 0.1)
    assert math.isclose(enc.input_dp.p, 0.3) and math.isclose(enc.emb_dp.embed_p, 0.05)
    assert all(math.isclose(r.weight_p, 0.25) for r in enc.rnns)
    un = get_language_model(30, 6, 8, 2, tie_weights=False)
    assert un[1].decoder.weight is not un[0].emb.weight
    assert isinstance(lm, SequentialRNN) and isinstance(lm, nn.Sequential)
    with pytest.raises(ValueError, match='drop_mult=2.*input_p'): get_language_model(30, 6, 8, 2, drop_mult=2)
    with pytest.raises(ValueError, match='drop_mult must be'): get_language_model(30, 6, 8, 2, drop_mult=-1)

def test_language_model_state_dict_round_trip(tmp_path):
    set_seed(15)
    lm = get_language_model(40, 6, 8, 2)
    x = torch.randint(0, 40, (2, 5))
    lm(x)[0].sum().backward()
    torch.save(lm.state_dict(), tmp_path/'lm.pth')
    set_seed(99)
    lm2 = get_language_model(40, 6, 8, 2)
    lm2.load_state_dict(torch.load(tmp_path/'lm.pth', weights_only=True))
    assert lm2[1].decoder.weight is lm2[0].emb.weight      # still tied after loading
    lm.eval(); lm2.eval(); lm.reset(); lm2.reset()
    assert torch.equal(lm(x)[0], lm2(x)[0])
    buf = io.BytesIO(); torch.save(copy.deepcopy(lm), buf)   # the whole model pickles too

# --- loss and metric ---

def test_flat_loss_and_accuracy():
    set_seed(16)
    logits, y = torch.randn(3, 5, 11), torch.randint(0, 11, (3, 5))
    close(cross_entropy_flat(logits, y), F.cross_entropy(logits.transpose(1, 2), y))
    close(cross_entropy_flat(logits.transpose(0, 1), y.t()), F.cross_entropy(logits.transpose(1, 2), y))  # non-contiguous
    expected = sum(int(logits[i, j].argmax() == y[i, j]) for i in range(3) for j in range(5)) / 15
    assert math.isclose(accuracy_flat(logits, y).item(), expected, rel_tol=1e-6)
    for f in (cross_entropy_flat, accuracy_flat):
        with pytest.raises(ValueError, match=r'\(batch, seq, vocab\)'): f(logits, y[:, :4])
        with pytest.raises(ValueError, match=r'\(batch, seq, vocab\)'): f(logits.reshape(15, 11), y)

# --- callbacks ---

def lm_data(vocab=20, n=24, sl=9, bs=4, seed=0):
    "Token rows of a repeating pattern (something to learn), as language-model pairs."
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, vocab, (n, 1), generator=g)
    ids = (start + torch.arange(sl + 1)) % vocab
    tr, va = ids[:n - 8], ids[n - 8:]
    return DataBunch(DataLoader(Dataset(tr[:, :-1], tr[:, 1:]), bs), DataLoader(Dataset(va[:, :-1], va[:, 1:]), bs))

class Grads(Callback):
    _order = -2
    def after_backward(self): self.before = [p.grad.clone() for p in self.model.parameters() if p.grad is not None]

class Rec(Callback):
    _order = 1
    def begin_fit(self): self.rec, self.resets = [], []
    def after_loss(self):
        rt = self.rnn_trainer
        self.rec.append(dict(train=self.in_train, loss=self.loss.detach().clone(),
                             ce=cross_entropy_flat(self.pred, self.yb).detach(), raw=rt.raw_out[-1].detach(),
                             out=rt.out[-1].detach(), pred_shape=tuple(self.pred.shape)))
    def after_backward(self):
        g0 = torch.cat([g.flatten() for g in self.grads.before])
        g1 = torch.cat([p.grad.flatten() for p in self.model.parameters() if p.grad is not None])
        self.rec[-1].update(before=g0.norm(), after=g1.norm(), cos=F.cosine_similarity(g0, g1, 0))

def make_learner(cbs, lr=1e-2, model=None, data=None):
    set_seed(17)
    return Learner(model or get_language_model(20, 6, 8, 2), data or lm_data(), cross_entropy_flat,
                   opt_func=adam_opt(), lr=lr, cbs=cbs)

def test_rnn_trainer_adds_ar_tar_in_training_only():
    learn = make_learner([RNNTrainer(2., 1.), Grads(), Rec()])
    learn.fit(1)
    train = [r for r in learn.rec.rec if r['train']]
    valid = [r for r in learn.rec.rec if not r['train']]
    assert train and valid
    for r in train:
        assert r['pred_shape'] == (4, 9, 20)
        ar = 2. * r['out'].pow(2).mean()
        tar = 1. * (r['raw'][:, 1:] - r['raw'][:, :-1]).pow(2).mean()
        close(r['loss'], r['ce'] + ar + tar)
        assert ar > 0 and tar > 0
    for r in valid: assert torch.equal(r['loss'], r['ce'])
    assert learn.rnn_trainer.raw_out is None and learn.rnn_trainer.out is None  # let go after the batch

def test_rnn_trainer_ar_uses_dropped_and_tar_raw_outputs():
    "With output dropout, the dropped outputs (AR's) differ from the raw ones (TAR's)."
    learn = make_learner([RNNTrainer(2., 1.), Grads(), Rec()], model=get_language_model(20, 6, 8, 2, output_p=0.5))
    learn.fit(1)
    r = next(r for r in learn.rec.rec if r['train'])
    assert not torch.equal(r['out'], r['raw'])
    assert ((r['out'] == 0) | torch.isclose(r['out'], 2 * r['raw'])).all()

def test_rnn_trainer_zero_alpha_beta_is_plain_loss():
    learn = make_learner([RNNTrainer(0., 0.), Grads(), Rec()])
    learn.fit(1)
    for r in learn.rec.rec: close(r['loss'], r['ce'])

def test_valid_loss_is_the_honest_cross_entropy():
    "AvgStats' validation loss = cross entropy of the model in eval mode, read from a reset state: exp of it is the perplexity."
    learn = make_learner([RNNTrainer(), AvgStatsCallback(show=False)])
    learn.fit(2)
    m = learn.model.eval()
    m.reset()
    tot, n = 0., 0
    with torch.no_grad():
        for xb, yb in learn.data.valid_dl:
            tot += cross_entropy_flat(m(xb)[0], yb).item() * len(yb); n += len(yb)
    assert math.isclose(learn.avg_stats.valid_stats.avg_stats[0], tot / n, rel_tol=1e-5)

def test_rnn_trainer_resets_each_epoch_and_validation():
    calls = []
    model = get_language_model(20, 6, 8, 2)
    orig = model.reset
    model.reset = lambda: (calls.append(1), orig())
    learn = make_learner([RNNTrainer()], model=model)
    learn.fit(2)
    assert len(calls) == 4  # begin_epoch and begin_validate, twice

def test_rnn_trainer_refuses():
    with pytest.raises(TypeError, match='no reset'): make_learner([RNNTrainer()], model=nn.Sequential(nn.Embedding(20, 4))).fit(1)
    class NoTuple(nn.Module):
        def __init__(self): super().__init__(); self.emb = nn.Embedding(20, 20)
        def reset(self): pass
        def forward(self, x): return self.emb(x)
    with pytest.raises(TypeError, match=r'\(decoded, raw_outputs, outputs\)'): make_learner([RNNTrainer()], model=NoTuple()).fit(1)
    for bad in (-1, True, 'x'):
        with pytest.raises(ValueError, match='alpha'): RNNTrainer(alpha=bad)
        with pytest.raises(ValueError, match='beta'): RNNTrainer(beta=bad)

def test_gradient_clipping_bounds_norm_keeps_direction():
    learn = make_learner([RNNTrainer(), GradientClipping(0.05), Grads(), Rec()])
    learn.fit(1)
    train = [r for r in learn.rec.rec if r['train']]
    assert any(r['before'] > 0.05 for r in train)
    for r in train:
        assert r['after'] <= 0.05 * (1 + 1e-4)
        close(r['cos'], torch.tensor(1.), atol=1e-4, rtol=0)
        if r['before'] <= 0.05: close(r['after'], r['before'])
    assert torch.is_tensor(learn.gradient_clipping.norm)

def test_gradient_clipping_large_clip_changes_nothing():
    learn = make_learner([RNNTrainer(), GradientClipping(1e6), Grads(), Rec()])
    learn.fit(1)
    for r in learn.rec.rec:
        if r['train']: close(r['after'], r['before'])

@pytest.mark.parametrize('clip', [0, -1., None, True, '1'])
def test_gradient_clipping_bad_clip(clip):
    with pytest.raises(ValueError, match='clip must be'): GradientClipping(clip)

def test_short_training_learns_the_pattern():
    "The next token is the current one + 1 (mod vocab): a few epochs bring the validation loss far below ln(vocab)."
    learn = make_learner([RNNTrainer(), GradientClipping(1.), AvgStatsCallback(show=False)], lr=3e-2,
                         model=get_language_model(20, 16, 32, 2, drop_mult=0.))
    learn.fit(25)
    assert learn.avg_stats.valid_stats.avg_stats[0] < 0.5 * math.log(20)
