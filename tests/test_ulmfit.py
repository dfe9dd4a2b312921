"""ULMFiT pieces (notebooks 12b, 12c): the Kneser-Ney baseline, perplexity, saving and loading language models with
their vocabulary, matching embeddings to a new vocabulary, the padding-blind classifier, splitters, tf-idf."""
import math
import pytest, torch
import torch.nn.functional as F
from mylib.awd_lstm import get_language_model, AWD_LSTM
from mylib.text import LM_PreLoader, pad_collate, SPECIALS, TK_MAJ, TK_UP, BOS, EOS
from mylib.training import DataLoader
from mylib.ulmfit import KneserNeyBigram, lm_perplexity, save_lm, load_lm, lm_path, detokenize, generate
from mylib.textclas import (load_pretrained, match_embeds, SentenceEncoder, PoolingLinearClassifier, get_text_classifier,
                            clas_splitter, lm_splitter, freeze_to, discriminative_lrs, TfIdf, bigram_vocab, add_bigrams,
                            fit_linear, linear_accuracy, budget_epochs, ulmfit_stages, clas_accuracy, concat_pool,
                            sif_weights, top_direction, drop_direction)

def test_kneser_ney_sums_to_one_and_matches_hand_counts():
    s = torch.tensor([0, 1, 0, 1, 2, 0, 1, 1])  # pairs: 01 10 01 12 20 01 11
    kn = KneserNeyBigram(s, 4, d=0.5)
    for v in range(4): assert abs(kn.prob(torch.full((4,), v), torch.arange(4)).sum().item() - 1) < 1e-12
    # P_cont: tokens seen after 1, 3 (0 after 1,2; 1 after 0,1; 2 after 1) distinct predecessors; 5 distinct pairs
    p_cont = torch.tensor([(2 - .5 + .5 * 3 / 4) / 5, (2 - .5 + .5 * 3 / 4) / 5, (1 - .5 + .5 * 3 / 4) / 5, (.5 * 3 / 4) / 5], dtype=torch.float64)
    assert torch.allclose(kn.p_cont, p_cont)
    # P(1|0): c(0,1)=3, c(0)=3, 0 is followed by 1 distinct token
    want = (3 - .5) / 3 + .5 * 1 / 3 * p_cont[1].item()
    assert abs(kn.prob(torch.tensor([0]), torch.tensor([1])).item() - want) < 1e-12
    assert abs(kn.prob(torch.tensor([3]), torch.tensor([2])).item() - p_cont[2].item()) < 1e-12  # unseen context
    assert kn.perplexity(torch.tensor([0]), torch.tensor([1])) == pytest.approx(1 / want)

def test_lm_perplexity_is_token_weighted():
    torch.manual_seed(0)
    model = get_language_model(30, 8, 16, 2)
    dl = DataLoader(LM_PreLoader([torch.randint(0, 30, (203,))], bs=4, bptt=7), 4)
    model.eval(); model.reset(); tot = n = 0
    with torch.no_grad():
        for x, y in dl:
            tot += F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten(), reduction='sum').item(); n += y.numel()
    model.train()
    assert lm_perplexity(model, dl) == pytest.approx(math.exp(tot / n))
    assert model.training  # left in the mode it was in

def test_save_load_lm_round_trip_and_refusals(tmp_path):
    torch.manual_seed(0)
    config = dict(emb_sz=8, n_hid=16, n_layers=2, drop_mult=0.5)
    vocab = SPECIALS + [f'w{i}' for i in range(22)]
    model = get_language_model(len(vocab), **config)
    path = save_lm(tmp_path/'lm.pt', model, vocab, config)
    m2, v2, c2 = load_lm(path)
    assert v2 == vocab and c2 == config
    x = torch.randint(0, 30, (2, 5))
    model.eval(); m2.eval(); model.reset(); m2.reset()
    with torch.no_grad(): assert torch.equal(model(x)[0], m2(x)[0])
    assert not list(tmp_path.glob('.*.tmp'))
    with pytest.raises(FileNotFoundError, match='12b'): load_lm(tmp_path/'none.pt')
    torch.save({'a': 1}, tmp_path/'other.pt')
    with pytest.raises(ValueError, match='not a language model'): load_lm(tmp_path/'other.pt')
    (tmp_path/'junk.pt').write_bytes(b'junk')
    with pytest.raises(ValueError, match='not readable'): load_lm(tmp_path/'junk.pt')
    bad = torch.load(path, weights_only=True); bad['config'] = {**config, 'n_hid': 12}
    torch.save(bad, tmp_path/'bad.pt')
    with pytest.raises(ValueError, match='do not fit'): load_lm(tmp_path/'bad.pt')

def test_lm_path_is_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('MYLIB_DATA', str(tmp_path))
    assert lm_path().parent == tmp_path/'models' and lm_path('x').name.startswith('lm_x')

def test_load_pretrained_refuses_another_vocabulary(tmp_path):
    config = dict(emb_sz=8, n_hid=16, n_layers=2)
    vocab = SPECIALS + ['a', 'b', 'c']
    save_lm(tmp_path/'lm.pt', get_language_model(len(vocab), **config), vocab, config)
    other = SPECIALS + ['a', 'c', 'b']
    with pytest.raises(ValueError, match='another vocabulary.*index 9'):
        load_pretrained(get_language_model(len(other), **config), tmp_path/'lm.pt', other)
    with pytest.raises(ValueError, match='another architecture'):
        load_pretrained(get_language_model(len(vocab), 8, 12, 2), tmp_path/'lm.pt', vocab)
    m = load_pretrained(get_language_model(len(vocab), **config), tmp_path/'lm.pt', vocab)
    assert torch.equal(m[0].emb.weight, load_lm(tmp_path/'lm.pt')[0][0].emb.weight)

def test_match_embeds_keeps_known_rows_and_means_new_ones():
    torch.manual_seed(0)
    old = SPECIALS + ['a', 'b', 'c']
    new = SPECIALS + ['c', 'zz', 'a']
    lm = get_language_model(len(old), 8, 16, 2)
    st = match_embeds(lm.state_dict(), old, new)
    w, ow = st['0.emb.weight'], lm.state_dict()['0.emb.weight']
    assert torch.equal(w[8], ow[10]) and torch.equal(w[10], ow[8]) and torch.equal(w[9], ow.mean(0))
    assert torch.equal(st['1.decoder.bias'][9], lm.state_dict()['1.decoder.bias'].mean(0, keepdim=True)[0])
    assert torch.equal(st['0.rnns.0.module.weight_ih_l0'], lm.state_dict()['0.rnns.0.module.weight_ih_l0'])
    m = get_language_model(len(new), 8, 16, 2); m.load_state_dict(st)
    assert m[1].decoder.weight is m[0].emb.weight  # still tied after loading
    with pytest.raises(ValueError, match='rows'): match_embeds(lm.state_dict(), old[:-1], new)

def test_classifier_padding_changes_nothing():
    torch.manual_seed(0)
    m = get_text_classifier(40, 3, 8, 16, 2, bptt=5).eval()
    texts = [torch.randint(2, 40, (n,)) for n in (3, 17, 9, 12)]
    x = pad_collate([(t, 0) for t in texts], pad_idx=1)[0]
    with torch.no_grad():
        assert torch.allclose(m(x), torch.cat([m(t[None]) for t in texts]), atol=1e-5)
        with pytest.raises(ValueError, match='pad at the end'):
            m(pad_collate([(t, 0) for t in texts], pad_idx=1, pad_first=True)[0])

def test_concat_pooling_by_hand():
    head = PoolingLinearClassifier([6, 2], [0.])
    out = torch.tensor([[[1., 5.], [3., -1.], [9., 9.]]])
    mask = torch.tensor([[False, False, True]])
    head.layers = torch.nn.Sequential(torch.nn.Identity())  # look at what the head receives
    got = head((out, mask))
    assert got.tolist() == [[3., -1., 3., 5., 2., 2.]]  # last real, max, mean

def test_splitters_cover_all_trainable_params_and_freeze():
    m = get_text_classifier(40, 3, 8, 16, 3)
    groups = clas_splitter(m)
    assert len(groups) == 4 and sum(len(g) for g in groups) == len(list(m.parameters()))
    freeze_to(m, 1)
    assert len(clas_splitter(m)) == 1 and all(p.requires_grad for p in m[1].parameters())
    assert not any(p.requires_grad for p in m[0].parameters())
    freeze_to(m, 2)
    assert len(clas_splitter(m)) == 2 and all(p.requires_grad for p in m[0].module.rnns[-1].parameters())
    freeze_to(m, None)
    assert all(p.requires_grad for p in m.parameters())
    lm = get_language_model(40, 8, 16, 2)
    g = lm_splitter(lm)
    assert len(g) == 3 and sum(len(x) for x in g) == len(list(lm.parameters()))
    assert discriminative_lrs(1., 3) == pytest.approx([1 / 2.6 ** 2, 1 / 2.6, 1.])

def test_tfidf_by_hand():
    docs = [torch.tensor([0, 0, 1]), torch.tensor([1, 2])]
    tf = TfIdf(docs, 4)
    idf = torch.tensor([math.log(3 / 2) + 1, math.log(3 / 3) + 1, math.log(3 / 2) + 1, math.log(3 / 1) + 1])
    assert torch.allclose(tf.idf, idf)
    x = tf(docs + [torch.tensor([3])])
    row = torch.tensor([2 / 3 * idf[0], 1 / 3 * idf[1], 0, 0])
    assert torch.allclose(x[0], row / row.norm()) and torch.allclose(x.norm(dim=1), torch.ones(3))

def test_detokenize_and_generate():
    assert detokenize([BOS, TK_MAJ, 'hello', TK_UP, 'faq', 'x', '\n', 'y', EOS]) == 'Hello FAQ x\ny'
    vocab = SPECIALS + ['a', 'b']
    torch.manual_seed(0)
    m = get_language_model(len(vocab), 8, 16, 2)
    out = generate(m, vocab, 'a b', n_tokens=5, seed=1)
    assert out[:3] == [BOS, 'a', 'b'] and len(out) == 8 and out == generate(m, vocab, 'a b', n_tokens=5, seed=1)
    assert m.training

# --- 12c: the bag of words, the linear model, the budgets ---
def test_bigrams_by_hand():
    docs = [torch.tensor([0, 1, 2]), torch.tensor([0, 1]), torch.tensor([2, 0])]
    bg = bigram_vocab(docs)
    assert bg == {(0, 1): 0}  # the only pair seen twice
    assert bigram_vocab(docs, min_freq=1).keys() == {(0, 1), (1, 2), (2, 0)}
    out = add_bigrams(docs, 3, bg)
    assert out[0].tolist() == [0, 1, 2, 3] and out[1].tolist() == [0, 1, 3] and out[2].tolist() == [2, 0]
    assert add_bigrams([torch.tensor([], dtype=torch.long)], 3, bg)[0].numel() == 0

def test_tfidf_sparse_equals_dense_and_empty_doc_is_zero():
    docs = [torch.tensor([0, 0, 1]), torch.tensor([1, 2]), torch.tensor([], dtype=torch.long)]
    tf = TfIdf(docs[:2], 4)
    dense, sparse = tf(docs), tf(docs, sparse=True)
    assert sparse.is_sparse and torch.allclose(sparse.to_dense(), dense)
    assert dense[2].abs().sum() == 0

def test_fit_linear_separable_and_sparse_same_as_dense():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    m = fit_linear(x, y, 2, wd=1e-4)
    assert linear_accuracy(m, x, y) > 0.97
    ms = fit_linear(x.to_sparse(), y, 2, wd=1e-4)
    assert torch.allclose(ms.weight, m.weight, atol=1e-4)
    # a huge penalty shrinks the weights towards zero
    assert fit_linear(x, y, 2, wd=10.).weight.abs().max() < m.weight.abs().max() / 10

def test_budget_epochs_and_stages():
    assert budget_epochs(50) == 30 and budget_epochs(200) == 9 and budget_epochs(6000) == 6
    st = ulmfit_stages(30, 1e-2)
    assert [n for n, _, _ in st] == [1, 2, None] and sum(e for _, e, _ in st) == 30 and st[0][2] == 2e-2
    assert sum(e for _, e, _ in ulmfit_stages(6, 1e-2)) == 6

def test_clas_accuracy_matches_one_at_a_time_and_empty_snippet():
    from mylib.text import tokenize_text, BOS, EOS
    assert tokenize_text('') == [BOS, EOS]  # an empty snippet is its two markers: the classifier still reads it
    torch.manual_seed(0)
    model = get_text_classifier(20, 2, emb_sz=8, n_hid=12, n_layers=2).eval()
    docs = [torch.randint(4, 20, (n,)) for n in (2, 5, 9, 3, 7)]
    docs[0] = torch.tensor([2, 3])  # BOS, EOS ids: the empty snippet
    y = torch.tensor([0, 1, 1, 0, 1])
    with torch.no_grad(): pred = torch.cat([model(d[None]).argmax(1) for d in docs])
    assert clas_accuracy(model, docs, y, bs=2) == pytest.approx((pred == y).float().mean().item())

def test_time_budget_stops_training_and_schedules_by_share_used():
    from mylib.ulmfit import TimeBudget, rnn_learner
    from mylib.text import get_lm_dls
    with pytest.raises(ValueError, match='seconds'): TimeBudget(0)
    torch.manual_seed(0)
    docs = [torch.randint(4, 30, (400,)) for _ in range(20)]
    data = get_lm_dls(docs, docs[:2], bs=4, bptt=10)
    learn = rnn_learner(get_language_model(30, emb_sz=8, n_hid=16, n_layers=1), data, bf16=False)
    lrs = []
    tb = TimeBudget(0.3, {'lr': lambda pos: 1e-3 * (1 - pos)})
    class Spy(TimeBudget.__base__):
        _order = 2
        def begin_batch(self):
            if self.in_train: lrs.append(self.opt.param_groups[0]['lr'])
    learn.fit(1000, cbs=[tb, Spy()])
    assert tb.used >= 0.3 and tb.steps == len(tb.times) >= 1 and tb.steps < len(data.train_dl) * 1000  # stopped early
    assert lrs[0] == pytest.approx(1e-3) and all(a >= b for a, b in zip(lrs, lrs[1:]))  # the schedule runs on the share used
    assert 0 < tb.tokens <= tb.steps * 4 * 10


def test_sif_weights_by_hand():
    w = sif_weights([torch.tensor([0, 0, 1, 2]), [2]], 4, a=0.2, skip=[3])
    p = torch.tensor([2 / 5, 1 / 5, 2 / 5, 0.])
    want = 0.2 / (0.2 + p)
    want[3] = 0.
    assert torch.allclose(w, want)

def test_top_direction_is_the_first_principal_axis_of_uncentred_rows():
    torch.manual_seed(0)
    x = torch.randn(200, 3) * torch.tensor([0.5, 0.5, 0.5]) + torch.tensor([0., 4., 0.])
    u = top_direction(x)
    assert abs(u.norm().item() - 1) < 1e-5 and abs(abs(u[1].item()) - 1) < 0.01
    d = drop_direction(x, u)
    assert torch.allclose(d @ u, torch.zeros(200), atol=1e-4)
    assert torch.allclose(d + (x @ u)[:, None] * u, x, atol=1e-5)  # nothing else changed
