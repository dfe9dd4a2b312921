"""Text rules on what real reviews hold (notebook 12): cp1252 punctuation stored as control characters, `<br />`
tags, capitals; and the token cache's read-back (shared strings, same lists)."""
import pytest
from mylib.text import (fixup_text, tokenize_text, tokenize, tokens_cache_dir, BOS, EOS, TK_UP, TK_MAJ, TK_REP,
                        _save_tokens, _load_tokens)

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('MYLIB_DATA', str(tmp_path))
    return tmp_path

def test_fixup_text_reads_cp1252_punctuation():
    # Windows-1252 dashes, ellipsis and quotes arrive as code points 0x80-0x9f: read them, do not drop them
    assert fixup_text('hmmm\x85might') == 'hmmm\u2026might'
    assert fixup_text('a \x96 b \x97 c') == 'a \u2013 b \u2014 c'
    assert fixup_text('\x91quoted\x92 \x93twice\x94') == '\u2018quoted\u2019 \u201ctwice\u201d'
    assert fixup_text('no\xa0break') == 'no break'

def test_fixup_text_still_drops_other_control_characters():
    assert fixup_text('a\x07b\x00c') == 'abc'
    assert fixup_text('a\x81b\x8dc') == 'abc'  # code points cp1252 leaves undefined
    assert fixup_text('line\ttab\nnext') == 'line\ttab\nnext'

def test_cp1252_ellipsis_no_longer_glues_words():
    toks = tokenize_text('hmmm\x85might i suggest')
    assert toks[1:4] == ['hmmm', '\u2026', 'might']

def test_rules_on_a_review_like_text():
    toks = tokenize_text('I rented I AM CURIOUS-YELLOW.<br /><br />Awful!!!!')
    assert toks[0] == BOS and toks[-1] == EOS
    assert toks[1:9] == [TK_MAJ, 'i', 'rented', TK_MAJ, 'i', TK_UP, 'am', TK_UP]
    assert toks.count('\n') == 2 and TK_REP in toks
    assert '<' not in toks and 'br' not in toks

def test_cache_round_trip_shares_one_string_per_token(tmp_path):
    docs = [['xxbos', 'the', 'film', 'the', 'xxeos'], [], ['film', '\n', 'the']]
    fn = tmp_path/'t.npz'
    _save_tokens(fn, docs)
    back = _load_tokens(fn)
    assert back == docs
    assert len({id(t) for d in back for t in d}) == len({t for d in docs for t in d})

def test_cache_of_empty_list(tmp_path):
    fn = tmp_path/'empty.npz'
    _save_tokens(fn, [])
    assert _load_tokens(fn) == []

def test_tokenize_from_cache_equals_cold(cache):
    texts = ['A review.<br />GREAT \x96 really!!!!', 'Another one\x85 ok']
    cold = tokenize(texts, cache=False, show_progress=False)
    assert tokenize(texts, show_progress=False) == cold  # writes the cache
    assert list(tokens_cache_dir().glob('*.npz'))
    assert tokenize(texts, show_progress=False) == cold  # reads it
