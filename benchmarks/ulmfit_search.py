"""The side search that chose notebook 12c's classifier recipe, on the validation split.

It runs 12c's own code cells up to its classifier section (the task, the vocabulary, the pretrained model matched to
it, the language-model fine-tuning; the bag-of-words cells are skipped), then trains the ULMFiT classifier for each
variant below, by gradual unfreezing from the fine-tuned encoder, and prints train and validation accuracy. Full mode
only (it needs 12b's full language model). Output of the runs that chose the recipe: benchmarks/ulmfit_search.txt.
The other ulmfit_* benchmarks use its helpers: `notebook_setup`, `setup_with_lm`, `train_variant`, `valid_seeds`, `pretrain`.

    python benchmarks/ulmfit_search.py
"""
import json, statistics, time
from pathlib import Path

NB = Path(__file__).resolve().parent.parent/'nbs'/'12c_ulmfit.ipynb'
# (drop_mult, [(groups trained or None for all, epochs, peak lr), ...], seed)
VARIANTS = [(0.5, [(1, 1, 2e-2), (2, 1, 1e-2), (None, 2, 3e-3)], 0), (0.25, [(1, 1, 2e-2), (2, 1, 1e-2), (None, 2, 3e-3)], 0),
            (0.5, [(1, 1, 2e-2), (2, 1, 1e-2), (None, 2, 1e-2)], 0), (0.25, [(1, 1, 2e-2), (2, 1, 1e-2), (None, 3, 5e-3)], 0),
            (0.25, [(1, 1, 2e-2), (2, 1, 1e-2), (None, 3, 1e-2)], 0), (0.1, [(1, 1, 2e-2), (2, 1, 1e-2), (None, 3, 1e-2)], 0),
            (0.25, [(1, 1, 2e-2), (2, 1, 1e-2), (None, 4, 1e-2)], 0), (0.25, [(1, 1, 3e-2), (2, 1, 2e-2), (None, 3, 2e-2)], 0),
            (0.25, [(1, 1, 2e-2), (2, 1, 1e-2), (None, 4, 1e-2)], 1), (0.25, [(1, 1, 2e-2), (2, 1, 1e-2), (None, 4, 1e-2)], 2),
            (0.5, [(1, 1, 2e-2), (2, 1, 1e-2), (None, 4, 1e-2)], 0),
            (0.25, [(None, 6, 3e-3)], 0), (0.25, [(1, 1, 2e-2), (None, 5, 3e-3)], 0)]  # (after the choice) no gradual unfreezing

CHOSEN = (0.25, [(1, 1, 2e-2), (2, 1, 1e-2), (None, 4, 1e-2)])  # the recipe 12c uses: drop_mult and stages

def notebook_setup(lm=None, subs=()):
    "12c's namespace before '## The classifier' (bag-of-words cells left out); LM file `lm`, source replacements `subs`."
    ns = {}
    exec('import torch\nfrom torch import nn\nimport torch.nn.functional as F\nfrom mylib.transfer import set_trainable\n'
         'from mylib.schedules import one_cycle', ns)  # what 12c's export cells import (they are defined in mylib.ulmfit)
    for c in json.loads(NB.read_text())['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown' and src.startswith('## The classifier'): break
        if c['cell_type'] == 'code' and '#| export' not in src and 'bow_' not in src:
            if lm is not None: src = src.replace('lm_path()', repr(str(lm)))
            for a, b in subs: src = src.replace(a, b)
            exec(src, ns)
    return ns

def setup_with_lm(path):
    "`notebook_setup` with the language model saved at `path`, printing the fortunes' perplexities it goes through."
    ns = notebook_setup(lm=path)
    print(f"12c with it: fortunes' validation perplexity {ns['ppl_before']:.1f} before fine-tuning, "
          f"{ns['ppl_stage1']:.1f} after the embeddings, {ns['ppl_after']:.1f} after all layers")
    return ns

def train_variant(ns, dm, stages, seed):
    "A ULMFiT classifier from the fine-tuned encoder in `ns`, by gradual unfreezing; `(learner, seconds)`."
    from mylib.ulmfit import get_text_classifier, clas_learner, gradual_unfreeze
    from mylib.core import set_seed
    from mylib.training import accuracy
    set_seed(seed)
    model = get_text_classifier(len(ns['num'].vocab), len(ns['classes']), **ns['enc_config'], pad_token=ns['num'].pad_idx,
                                drop_mult=dm)
    model[0].module.load_state_dict(ns['ft'][0].state_dict())
    learn = clas_learner(model, ns['clas_data'], metrics=[accuracy]); learn.avg_stats.show = False
    t = time.perf_counter()
    gradual_unfreeze(learn, stages)
    return learn, time.perf_counter() - t

def valid_seeds(ns, seeds=(0, 1, 2)):
    "12c's chosen recipe from the fine-tuned encoder in `ns`, once per seed: the validation accuracies, printed as they come."
    accs = []
    for seed in seeds:
        clas, secs = train_variant(ns, *CHOSEN, seed)
        accs.append(ns['split_accuracy'](clas.model, 'valid'))
        print(f'  seed {seed}: valid accuracy {accs[-1]:.4f} ({secs:.0f} s)', flush=True)
    print(f'  ULMFiT: valid {statistics.mean(accs):.4f} ± {statistics.stdev(accs):.4f}', flush=True)
    return accs

def pretrain(t_train, t_valid, epochs, path):
    "12b's language model (its saved configuration and vocabulary size, its recipe) trained `epochs` epochs on token lists."
    from mylib.core import set_seed
    from mylib.text import NumericalizeProcessor, get_lm_dls
    from mylib.awd_lstm import get_language_model
    from mylib.schedules import one_cycle
    from mylib.ulmfit import rnn_learner, lm_perplexity, save_lm, load_lm, lm_path
    _, vocab, config = load_lm(lm_path())  # 12b's model: its configuration and vocabulary size
    num = NumericalizeProcessor(max_vocab=len(vocab))
    train_ids = num.process(t_train)
    data = get_lm_dls(train_ids, [num.proc1(d) for d in t_valid], 64, 70, valid_bs=64)
    set_seed(0)
    learn = rnn_learner(get_language_model(len(num.vocab), **config), data)
    t = time.perf_counter()
    learn.fit(epochs, cbs=one_cycle(1e-2, pct=0.25, moms=(0.8, 0.7, 0.8), mom='mom'))  # 12b's schedule
    print(f'language model: {epochs} epoch(s) in {time.perf_counter() - t:.0f} s; perplexity on the held-out '
          f'documentation {lm_perplexity(learn.model, data.valid_dl):.2f}', flush=True)
    return num, save_lm(path, learn.model, num.vocab, config)

def main():
    ns = notebook_setup()
    for dm, stages, seed in VARIANTS:
        learn, secs = train_variant(ns, dm, stages, seed)
        h = learn.avg_stats.history[-1]
        print(f'seed {seed} drop_mult {dm} stages {stages}: train acc {h["train_accuracy"]:.4f} '
              f'valid {ns["split_accuracy"](learn.model, "valid"):.4f} ({secs:.0f}s)', flush=True)

if __name__ == '__main__': main()
