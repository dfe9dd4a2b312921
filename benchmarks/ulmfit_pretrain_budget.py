"""Would a longer pretraining than the course can afford make 12c's ULMFiT beat the classifier from scratch?

12b pretrains its language model for one epoch of the documentation (406 s), the most the course's 60 minutes allow,
and 12c's ULMFiT classifier then reaches 0.5923 on the validation split against 0.5988 for the classifier from scratch.
This script trains 12b's model (configuration, recipe, seed, vocabulary size) for `epochs` epochs of the documentation,
or of the documentation and WordNet's glosses (`--wordnet`, see benchmarks/ulmfit_wordnet.py), and runs 12c's chosen
classifier recipe from it over three seeds. Validation split only; full mode only. Output:
benchmarks/ulmfit_pretrain_budget.txt.

    python benchmarks/ulmfit_pretrain_budget.py EPOCHS [--wordnet]
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ulmfit_search import pretrain, setup_with_lm, valid_seeds
from ulmfit_wordnet import wordnet_glosses
from mylib.core import set_threads
from mylib.corpora import lm_corpus
from mylib.datasets import data_dir
from mylib.text import tokenize

def main(epochs, wordnet=False):
    print('torch threads:', set_threads())
    train_docs, valid_docs = lm_corpus('python_docs')
    texts = train_docs + (wordnet_glosses() if wordnet else [])
    t_train, t_valid = tokenize(texts, show_progress=False), tokenize(valid_docs, show_progress=False)
    name = 'documentation' + (' + WordNet' if wordnet else '')
    print(f'{name}: {sum(map(len, t_train)):,} training tokens, {epochs} epoch(s)', flush=True)
    _, path = pretrain(t_train, t_valid, epochs, data_dir()/'models'/f'lm_budget_{epochs}{"_wordnet" if wordnet else ""}.pt')
    ns = setup_with_lm(path)
    print(f'ULMFiT from {epochs} epoch(s) of the {name}:'); valid_seeds(ns)

if __name__ == '__main__':
    args = sys.argv[1:]
    if not args or not args[0].isdigit(): sys.exit(__doc__)
    main(int(args[0]), '--wordnet' in args)
