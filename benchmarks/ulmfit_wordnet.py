"""Does widening 12b's pretraining corpus with WordNet's glosses help 12c's classifier? Measured on the validation split.

Python's documentation is technical prose: its 10,000 most frequent tokens hold only about a third of the fortunes'
vocabulary. WordNet (Debian's `wordnet-base`, not part of `make data`: `apt-get install wordnet-base`) defines nearly
every English word, one synset per line of its `data.*` files. This script adds one text per synset ("words: gloss;
examples") to the documentation's training files, trains 12b's language model on that (12b's configuration, recipe,
seed and vocabulary size), then runs 12c up to its classifier with that model and trains 12c's chosen classifier
recipe over three seeds. Compare with benchmarks/ulmfit_search.txt (the documentation alone: validation 0.5923 mean)
and with 12c's classifier from scratch (0.5988). Full mode only. Output: benchmarks/ulmfit_wordnet.txt.

    python benchmarks/ulmfit_wordnet.py
"""
import re, sys
from collections import Counter
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ulmfit_search import pretrain, setup_with_lm, valid_seeds
from mylib.core import set_threads
from mylib.corpora import lm_corpus, text_task, read_text
from mylib.datasets import data_dir
from mylib.text import tokenize, NumericalizeProcessor

WORDNET = Path('/usr/share/wordnet')

def synset_text(line):
    "One line of a WordNet data file as a text: its words, a colon, its gloss (definition and quoted examples)."
    head, gloss = line.split(' | ', 1)
    fields = head.split()
    n_words = int(fields[3], 16)
    words = [re.sub(r'\([a-z]+\)$', '', w).replace('_', ' ') for w in fields[4:4 + 2 * n_words:2]]
    return f"{', '.join(words)}: {gloss.strip()}"

def wordnet_glosses(path=WORDNET):
    "One text per synset of WordNet's nouns, verbs, adjectives and adverbs."
    files = [path/f'data.{pos}' for pos in ('noun', 'verb', 'adj', 'adv')]
    if not all(f.is_file() for f in files): sys.exit(f'no WordNet database in {path}: apt-get install wordnet-base')
    return [synset_text(l) for f in files for l in read_text(f).splitlines() if not l.startswith('  ')]  # '  ': licence

def coverage(vocab, toks):
    "Share of the fortunes' tokens seen twice that `vocab` holds, and share of all their training tokens it covers."
    c = Counter(t for d in toks for t in d)
    kept, v = [t for t, n in c.items() if n >= 2], set(vocab)
    return sum(t in v for t in kept), len(kept), sum(n for t, n in c.items() if t in v) / sum(c.values())

def main():
    print('torch threads:', set_threads())
    glosses = wordnet_glosses()
    print(f'{len(glosses):,} WordNet synsets, e.g. {glosses[1000]!r}')
    train_docs, valid_docs = lm_corpus('python_docs')
    t_docs, t_valid, t_wn = (tokenize(t, show_progress=False) for t in (train_docs, valid_docs, glosses))
    print(f'training tokens: documentation {sum(map(len, t_docs)):,}, WordNet {sum(map(len, t_wn)):,}')
    num, path = pretrain(t_docs + t_wn, t_valid, 1, data_dir()/'models'/'lm_python_docs_wordnet.pt')
    docs_only = NumericalizeProcessor(max_vocab=10000); docs_only.process(t_docs)
    t_fortunes = tokenize(text_task('fortunes')['train'][0], show_progress=False)
    for name, v in (('documentation', docs_only.vocab), ('documentation + WordNet', num.vocab)):
        shared, n, cov = coverage(v, t_fortunes)
        print(f'vocabulary of {name}: {shared:,} of the {n:,} fortune tokens, {cov:.1%} of their training tokens')
    ns = setup_with_lm(path)
    print('ULMFiT from the documentation + WordNet model:'); valid_seeds(ns)

if __name__ == '__main__': main()
