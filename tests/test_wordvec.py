"""Word vectors (notebook 12_word_vectors): the skip-gram pieces on tiny hand-checked cases, and the API later notebooks
use to load and apply the vectors — with the bad inputs each must refuse clearly."""
import math
import pytest, torch
import mylib.wordvec as wv
from mylib.wordvec import (WORDVEC_DIM, keep_probs, noise_probs, noise_table, window_pairs, sgns_loss, SkipGram,
                           sgns_grads, sgns_step, train_sgns, nearest, analogy, wordvec_path, save_word_vectors,
                           load_word_vectors, vectors_for_vocab, mean_vectors)

def test_keep_probs_by_hand():
    assert torch.allclose(keep_probs(torch.tensor([1, 3]), t=0.25), torch.tensor([1, 3 ** -0.5]))
    kp = keep_probs(torch.tensor([0, 10, 990]), t=1e-2)  # a token never seen is never dropped
    assert kp[0] == 1 and kp[1] == 1 and kp[2] == pytest.approx(math.sqrt(1e-2 / 0.99))

def test_noise_probs_and_table():
    assert torch.allclose(noise_probs(torch.tensor([1, 16])), torch.tensor([1 / 9, 8 / 9]))
    assert noise_probs(torch.tensor([0, 5, 7])).sum().item() == pytest.approx(1)
    assert noise_probs(torch.tensor([0, 5, 7]))[0] == 0
    table = noise_table(torch.tensor([0.25, 0.75]), size=100_000, generator=torch.Generator().manual_seed(0))
    assert table.dtype == torch.int32 and table.float().mean().item() == pytest.approx(0.75, abs=0.01)

def pairs_by_loop(stream, doc, spans):
    return sorted((stream[i], stream[j]) for i in range(len(stream)) for j in range(i - spans[i], i + spans[i] + 1)
                  if j != i and 0 <= j < len(stream) and doc[j] == doc[i])

@pytest.mark.parametrize('seed', range(5))
def test_window_pairs_matches_a_loop(seed):
    g = torch.Generator().manual_seed(seed)
    n = 30
    stream = torch.randint(0, 8, (n,), generator=g)
    doc = torch.sort(torch.randint(0, 4, (n,), generator=g)).values
    spans = torch.randint(1, 6, (n,), generator=g)
    c, o = window_pairs(stream, doc, spans)
    assert sorted(zip(c.tolist(), o.tolist())) == pairs_by_loop(stream.tolist(), doc.tolist(), spans.tolist())

def test_window_pairs_edge_cases():
    empty = torch.zeros(0, dtype=torch.long)
    c, o = window_pairs(empty, empty, empty)
    assert len(c) == len(o) == 0
    c, o = window_pairs(torch.tensor([5]), torch.tensor([0]), torch.tensor([3]))  # one token: no pair
    assert len(c) == 0
    c, o = window_pairs(torch.tensor([1, 2]), torch.tensor([0, 1]), torch.tensor([5, 5]))  # never across documents
    assert len(c) == 0

def test_hand_gradient_matches_autograd_and_sgd():
    torch.manual_seed(0)
    m = SkipGram(6, 3).double()
    with torch.no_grad(): m.inp.weight.normal_(); m.out.weight.normal_()
    c, o, n = torch.tensor([0, 0, 5]), torch.tensor([1, 2, 0]), torch.tensor([[1, 1], [3, 4], [0, 2]])
    W0, U0 = m.inp.weight.detach().clone(), m.out.weight.detach().clone()
    loss, dv, du, dun = sgns_grads(W0, U0, c, o, n)
    m(c, o, n).sum().backward()
    assert m.inp.weight.grad.is_sparse
    assert torch.allclose(loss, sgns_loss(W0[c], U0[o], U0[n]))
    assert torch.allclose(torch.zeros_like(W0).index_add_(0, c, dv), m.inp.weight.grad.to_dense())
    gU = torch.zeros_like(U0).index_add_(0, o, du).index_add_(0, n.flatten(), dun.flatten(0, 1))
    assert torch.allclose(gU, m.out.weight.grad.to_dense())
    torch.optim.SGD(m.parameters(), lr=0.3).step()
    sgns_step(W0, U0, c, o, n, lr=0.3)
    assert torch.allclose(W0, m.inp.weight) and torch.allclose(U0, m.out.weight)

def test_skipgram_starts_at_6_log_2():
    m = SkipGram(10, 4)
    assert m.inp.weight.abs().max() <= 0.5 / 4 and (m.out.weight == 0).all()
    loss = m(torch.tensor([1, 2]), torch.tensor([3, 4]), torch.tensor([[5] * 5, [6] * 5]))
    assert torch.allclose(loss, torch.full((2,), 6 * math.log(2)))

def test_train_sgns_small_corpus():
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(0, 20, (50,), generator=g) for _ in range(10)] + [torch.tensor([], dtype=torch.long)]
    W, U, stats = train_sgns(docs, 20, dim=8, epochs=2, bs=64, skip=(0,), seed=1, show_progress=False)
    assert W.shape == U.shape == (20, 8)
    assert stats['losses'][0] == pytest.approx(6 * math.log(2), rel=1e-5)
    assert stats['pairs'] > 0 and len(stats['epoch_loss']) == 2 and stats['tokens'] < 2 * 500  # token 0 skipped
    W2, _, _ = train_sgns(docs, 20, dim=8, epochs=2, bs=64, skip=(0,), seed=1, show_progress=False)
    assert torch.equal(W, W2)  # seeded: the same vectors again

def test_train_sgns_refuses_bad_input():
    docs = [torch.tensor([1, 2, 3, 4])]
    with pytest.raises(ValueError, match='epochs'): train_sgns(docs, 5, epochs=0)
    with pytest.raises(ValueError, match='some text'): train_sgns([torch.tensor([], dtype=torch.long)], 5)
    with pytest.raises(ValueError, match='some text'): train_sgns([torch.tensor([1, 1])], 5, skip=(1,))
    with pytest.raises(ValueError, match=r'\[0, 4\)'): train_sgns(docs, 4)

def toy_vectors():
    vocab = ['man', 'woman', 'king', 'queen', 'apple']
    vecs = torch.tensor([[1., 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1]])
    return vecs, vocab

def test_nearest_and_analogy():
    vecs, vocab = toy_vectors()
    res = nearest(vecs, vocab, 'king', k=2)
    assert [t for t, _ in res] == ['man', 'queen'] or [t for t, _ in res] == ['queen', 'man']
    assert 'king' not in [t for t, _ in nearest(vecs, vocab, 'king', k=10)]
    assert len(nearest(vecs, vocab, 'king', k=10)) == 4  # never more than the other tokens
    assert nearest(vecs, vocab, 'apple', k=1)[0][1] == pytest.approx(0.0)
    assert nearest(vecs, vocab, torch.tensor([0., 0, 0, 2]), k=1)[0] == ('apple', pytest.approx(1.0))  # a vector query
    assert analogy(vecs, vocab, 'man', 'woman', 'king')[0][0] == 'queen'
    with pytest.raises(ValueError, match="'prince' is not in the vocabulary"): nearest(vecs, vocab, 'prince')
    with pytest.raises(ValueError, match='not in the vocabulary'): analogy(vecs, vocab, 'man', 'woman', 'prince')
    with pytest.raises(ValueError, match='4 vectors for a vocabulary of 5'): nearest(vecs[:4], vocab, 'man')

def test_wordvec_path(monkeypatch, tmp_path):
    monkeypatch.setenv('MYLIB_DATA', str(tmp_path))
    monkeypatch.setattr(wv, 'QUICK', False)
    assert wordvec_path() == tmp_path/'models'/'wordvec_imdb.pt'
    monkeypatch.setattr(wv, 'QUICK', True)
    assert wordvec_path('wiki') == tmp_path/'models'/'wordvec_wiki_quick.pt'
    assert WORDVEC_DIM == 128

def test_save_load_round_trip(tmp_path):
    vecs, vocab = toy_vectors()
    path = save_word_vectors(tmp_path/'sub'/'wv.pt', vecs.double(), vocab)  # makes the folder; stores float32
    v2, voc2 = load_word_vectors(path)
    assert torch.equal(v2, vecs) and v2.dtype == torch.float32 and voc2 == vocab
    assert [p.name for p in (tmp_path/'sub').iterdir()] == ['wv.pt']  # no temporary file left behind

def test_save_refuses_mismatch(tmp_path):
    vecs, vocab = toy_vectors()
    with pytest.raises(ValueError, match='one row per token'): save_word_vectors(tmp_path/'a.pt', vecs[:3], vocab)
    with pytest.raises(ValueError, match='one row per token'): save_word_vectors(tmp_path/'a.pt', vecs[0], vocab[:1])
    with pytest.raises(ValueError, match='strings'): save_word_vectors(tmp_path/'a.pt', vecs, list(range(5)))
    assert not (tmp_path/'a.pt').exists()

def test_load_refuses_missing_and_wrong_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='run notebook 12_word_vectors in the same mode'):
        load_word_vectors(tmp_path/'nothing.pt')
    (tmp_path/'text.pt').write_text('not a tensor file')
    with pytest.raises(ValueError, match='not readable by torch.load'): load_word_vectors(tmp_path/'text.pt')
    torch.save({'format': 'mylib.lm', 'vocab': ['a'], 'model': {}}, tmp_path/'lm.pt')
    with pytest.raises(ValueError, match='not a word-vector file'): load_word_vectors(tmp_path/'lm.pt')
    torch.save({'format': 'mylib.wordvec', 'version': 1, 'vocab': ['a', 'b'], 'vectors': torch.zeros(3, 4)}, tmp_path/'bad.pt')
    with pytest.raises(ValueError, match='3 rows for a vocabulary of 2'): load_word_vectors(tmp_path/'bad.pt')

def test_vectors_for_vocab():
    vecs, vocab = toy_vectors()
    new = ['queen', 'prince', 'man', 'xxpad']
    M, known = vectors_for_vocab(vecs, vocab, new, min_known=0.5)
    assert M.shape == (4, 4) and known.tolist() == [True, False, True, False]
    assert torch.equal(M[0], vecs[3]) and torch.equal(M[2], vecs[0])
    assert torch.equal(M[1], vecs.mean(0)) and torch.equal(M[3], vecs.mean(0))
    M[0] += 1
    assert torch.equal(vecs[3], torch.tensor([1., 1, 1, 0]))  # a copy: the table is untouched

def test_vectors_for_vocab_refuses_other_vocabularies():
    vecs, vocab = toy_vectors()
    with pytest.raises(ValueError, match='a word-vector table for another vocabulary'):
        vectors_for_vocab(vecs, vocab + ['pear'], vocab)
    with pytest.raises(ValueError, match='wrong vocabulary'):
        vectors_for_vocab(vecs, vocab, ['man'] + [f'w{i}' for i in range(20)])  # 1 of 21 known: under 10%
    with pytest.raises(ValueError, match='wrong vocabulary'):
        vectors_for_vocab(vecs, vocab, [0, 1, 2, 3])  # ids instead of tokens
    with pytest.raises(ValueError, match='empty'): vectors_for_vocab(vecs, vocab, [])
    M, known = vectors_for_vocab(vecs, vocab, ['man'] + [f'w{i}' for i in range(20)], min_known=0)
    assert known.sum() == 1

def test_mean_vectors():
    table = torch.arange(12.).view(4, 3)
    docs = [torch.tensor([0, 1]), [3], torch.tensor([], dtype=torch.long), torch.tensor([2, 2, 0])]
    out = mean_vectors(docs, table)
    assert out.shape == (4, 3)
    assert torch.equal(out[0], table[[0, 1]].mean(0)) and torch.equal(out[1], table[3])
    assert torch.equal(out[2], torch.zeros(3))  # an empty doc: zeros
    assert torch.allclose(out[3], table[[2, 2, 0]].mean(0))
    assert mean_vectors([], table).shape == (0, 3)
    assert torch.equal(mean_vectors([[]], table), torch.zeros(1, 3))
    t = table.clone().requires_grad_()
    mean_vectors(docs, t).sum().backward()  # differentiable in the table
    assert t.grad[1].tolist() == [0.5] * 3
    with pytest.raises(ValueError, match=r'\[0, 4\)'): mean_vectors([torch.tensor([4])], table)
    with pytest.raises(ValueError, match=r'\[0, 4\)'): mean_vectors([torch.tensor([-1])], table)

def test_window_pairs_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match='one entry per token'):
        window_pairs(torch.arange(4), torch.zeros(4, dtype=torch.long), torch.ones(3, dtype=torch.long))

def test_weighted_mean_vectors_equal_weights_is_the_mean_and_rare_tokens_count_more():
    torch.manual_seed(0)
    table = torch.randn(6, 4)
    docs = [[0, 1, 1], [], [5], [2, 3, 4, 0]]
    assert torch.allclose(mean_vectors(docs, table, torch.full((6,), 0.3)), mean_vectors(docs, table), atol=1e-6)
    w = torch.tensor([1., 3., 0., 0., 0., 0.])
    out = mean_vectors(docs, table, w)
    assert torch.allclose(out[0], (table[0] + 6 * table[1]) / 7, atol=1e-6)  # weights 1, 3, 3
    assert torch.equal(out[1], torch.zeros(4)) and torch.equal(out[2], torch.zeros(4))  # empty, and weight 0 only
    assert mean_vectors([], table, w).shape == (0, 4)

def test_weighted_mean_vectors_refuses_bad_input():
    table = torch.randn(5, 3)
    with pytest.raises(ValueError, match='one per row'): mean_vectors([[0]], table, torch.ones(4))
    with pytest.raises(ValueError, match='must lie in'): mean_vectors([[0, 5]], table, torch.ones(5))
