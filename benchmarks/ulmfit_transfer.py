"""What the language model needs, for notebook 12c: pretraining tokens and the pretraining corpus, measured on the
Rotten Tomatoes snippets (12c's splits, vocabulary and code).

1. A linear probe against pretraining tokens: 12b's model shape, pretrained on IMDb for several numbers of tokens (none
   included), each encoder frozen; a snippet's features are the concat pooling of its outputs; a logistic regression
   (L2 chosen on validation) reads them, at 100 labels per class (three seeds) and at all labels; scored on test once.
2. The corpus at equal tokens: the same shape pretrained on Python's documentation and on IMDb for the same number of
   tokens: each one's perplexity on the validation snippets before fine-tuning (against a Kneser–Ney bigram counted on
   the training snippets), its probe, and ULMFiT from it at 100 labels per class (three seeds).
3. The schedule at all labels: 12c's scratch and ULMFiT classifiers (ULMFiT from 12b's own model, fine-tuned as 12c
   does) on every labelled snippet, in batches of 32 for 6 epochs or of 64 for 3 or 5, compared on validation (2 seeds):
   12c uses the cheaper schedule at all labels if it loses nothing there.

It reads 12b's shape, vocabulary size and training recipe from the model 12b saved, so run 12b in full first. The
output of the committed run is benchmarks/ulmfit_transfer.txt; its numbers are in benchmarks/ulmfit_transfer.json,
which 12c reads and plots.

    python benchmarks/ulmfit_transfer.py           # the study (about 45 minutes on 2 cores)
    python benchmarks/ulmfit_transfer.py --tiny    # a smoke run on slices, writes nothing
"""
import argparse, json, math, statistics, time
from pathlib import Path
import torch
import torch.nn.functional as F
from mylib.core import set_seed, set_threads
from mylib.corpora import lm_corpus, text_task, sample_per_class
from mylib.datablock import CategoryProcessor, LabeledData, ItemList
from mylib.training import accuracy
from mylib.text import tokenize, NumericalizeProcessor, get_lm_dls, get_clas_dls
from mylib.awd_lstm import get_language_model
from mylib.schedules import one_cycle
from mylib.ulmfit import load_lm, lm_path, rnn_learner, lm_perplexity, KneserNeyBigram
from mylib.textclas import (match_embeds, concat_pool, SentenceEncoder, fit_linear, linear_accuracy, fine_tune_lm,
                            get_text_classifier, clas_learner, gradual_unfreeze, ulmfit_stages, budget_epochs, clas_accuracy)

OUT = Path(__file__).resolve().parent/'ulmfit_transfer.json'
WDS = [1e-4, 1e-3, 1e-2, 1e-1]

def log(*a): print(*a, flush=True)

def take_tokens(docs, n, seed=0):
    "Documents in a seeded random order until `n` tokens (the last one cut): a pretraining budget."
    out, tot = [], 0
    for i in torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist():
        if tot >= n: break
        out.append(docs[i][:n - tot]); tot += len(out[-1])
    return out

def numericalized(name, max_vocab, step, vocab=None):
    "Training and held-out ids of the language-model corpus `name`, with `vocab` or one learned on its training texts."
    train, valid = lm_corpus(name)
    tt, tv = tokenize(train[::step], show_progress=False), tokenize(valid[::step], show_progress=False)
    num = NumericalizeProcessor(vocab, max_vocab=max_vocab)
    return num(tt), num.process(tv), num.vocab

def pretrain(train_ids, valid_ids, vocab, config, n_tokens, lr, bs=64, bptt=70):
    "12b's model pretrained for one pass over `n_tokens` tokens of `train_ids`; (model, seconds, held-out perplexity)."
    set_seed(0)
    model = get_language_model(len(vocab), **config)
    if n_tokens == 0: return model, 0., lm_perplexity(model, get_lm_dls(valid_ids, valid_ids, bs, bptt).valid_dl)
    data = get_lm_dls(take_tokens(train_ids, n_tokens), valid_ids, bs, bptt)
    t = time.perf_counter()
    rnn_learner(model, data).fit(1, cbs=one_cycle(lr, pct=0.25, moms=(0.8, 0.7, 0.8), mom='mom'))
    return model, time.perf_counter() - t, lm_perplexity(model, data.valid_dl)

class Snippets:
    "12c's Rotten Tomatoes splits, tokens, vocabulary and labels."
    def __init__(self, step):
        task = text_task('rotten_tomatoes')
        toks = {k: tokenize(x[::step], show_progress=False) for k, (x, _) in task.items()}
        self.num = NumericalizeProcessor(max_vocab=60000, min_freq=1)
        self.num(toks['train'])
        cat = CategoryProcessor()
        self.ys = {k: torch.tensor(cat(y[::step])) for k, (_, y) in task.items()}
        self.ids = {k: self.num.process(v) for k, v in toks.items()}
        self.vocab = self.num.vocab
        self.lm_data = get_lm_dls(self.ids['train'], self.ids['valid'], 32, 70)
        vx, vy = (torch.cat([b[i].flatten() for b in self.lm_data.valid_dl]) for i in (0, 1))
        self.bigram_ppl = KneserNeyBigram(torch.cat(self.ids['train']), len(self.vocab)).perplexity(vx, vy)

    def lm_for(self, model, vocab, config):
        "`model` (a language model over `vocab`) moved onto the snippets' vocabulary, dropouts of 12c's fine-tuning."
        lm = get_language_model(len(self.vocab), **{**config, 'drop_mult': 0.5})
        lm.load_state_dict(match_embeds(model.state_dict(), vocab, self.vocab))
        return lm

    def features(self, lm):
        "Concat pooling of the frozen encoder's last-layer outputs, per snippet of each split (bs 128, sorted by length)."
        enc = SentenceEncoder(lm[0], pad_idx=self.num.pad_idx).eval()
        out = {}
        with torch.no_grad():
            for k, docs in self.ids.items():
                order = sorted(range(len(docs)), key=lambda i: len(docs[i]))
                feats = torch.zeros(len(docs), 3 * lm[0].emb_sz)
                for s in range(0, len(docs), 128):
                    idx = order[s:s + 128]
                    x = torch.full((len(idx), max(len(docs[i]) for i in idx)), self.num.pad_idx)
                    for j, i in enumerate(idx): x[j, :len(docs[i])] = docs[i]
                    o, mask = enc(x)
                    feats[idx] = concat_pool(o.float(), mask)
                out[k] = feats
        mu, sd = out['train'].mean(0), out['train'].std(0).clamp(min=1e-6)
        return {k: (v - mu) / sd for k, v in out.items()}

    def probe(self, feats, budget, seeds):
        "L2 chosen on validation (mean over `seeds`), then (mean valid, mean test) of the seeds' logistic regressions."
        runs = {}
        for wd in WDS:
            runs[wd] = []
            for s in seeds:
                idx = torch.tensor(sample_per_class(self.ys['train'].tolist(), budget, s))
                m = fit_linear(feats['train'][idx], self.ys['train'][idx], 2, wd=wd, seed=s)
                runs[wd].append((linear_accuracy(m, feats['valid'], self.ys['valid']), linear_accuracy(m, feats['test'], self.ys['test'])))
        best = max(WDS, key=lambda wd: statistics.mean(v for v, _ in runs[wd]))
        return statistics.mean(v for v, _ in runs[best]), statistics.mean(t for _, t in runs[best]), best

def train_classifier(sn, lm, config, budget, seeds, lr, dm, bs=32, base=6):
    "12c's classifier from `lm`'s encoder by gradual unfreezing (`lm=None`: from scratch, one one-cycle): (mean valid, mean test, seconds per model)."
    enc = {k: config[k] for k in ('emb_sz', 'n_hid', 'n_layers')}
    valid = LabeledData(ItemList(sn.ids['valid']), ItemList(sn.ys['valid'].tolist()))
    res, t = [], time.perf_counter()
    for s in seeds:
        idx = sample_per_class(sn.ys['train'].tolist(), budget, s)
        train = LabeledData(ItemList([sn.ids['train'][i] for i in idx]), ItemList(sn.ys['train'][idx].tolist()))
        set_seed(s)
        model = get_text_classifier(len(sn.vocab), 2, **enc, pad_token=sn.num.pad_idx, drop_mult=dm)
        if lm is not None: model[0].module.load_state_dict(lm[0].state_dict())
        learn = clas_learner(model, get_clas_dls(train, valid, bs=bs, pad_idx=sn.num.pad_idx), metrics=[accuracy])
        learn.avg_stats.show = False
        epochs = budget_epochs(len(idx), bs, base=base)
        if lm is not None: gradual_unfreeze(learn, ulmfit_stages(epochs, lr))
        else: learn.fit(epochs, cbs=one_cycle(lr, pct=0.25, moms=(0.8, 0.7, 0.8), mom='mom'))
        res.append(tuple(clas_accuracy(model, sn.ids[k], sn.ys[k], sn.num.pad_idx) for k in ('valid', 'test')))
    return statistics.mean(v for v, _ in res), statistics.mean(t for _, t in res), (time.perf_counter() - t) / len(seeds)

def ulmfit_at(sn, lm, config, budget, seeds, lr=1e-2, dm=0.5):
    "ULMFiT from `lm` (already on the snippets' vocabulary), as 12c trains it: (mean valid, mean test) over `seeds`."
    fine_tune_lm(lm, sn.lm_data)
    return train_classifier(sn, lm, config, budget, seeds, lr, dm)[:2]

# 12c's rates and dropout scales, chosen there at 100 labels per class on validation
CHOSEN = {'from scratch': (1e-2, 0.25), 'ULMFiT': (1e-2, 0.5)}
SCHEDULES = [(32, 6), (64, 3), (64, 5)]  # (batch size, epochs)

def all_labels_schedule(sn, seeds, tiny):
    "12b's own model fine-tuned as 12c does, then scratch and ULMFiT classifiers at all labels under each schedule."
    model, vocab, config = load_lm(lm_path('imdb'))
    lm = sn.lm_for(model, vocab, config)
    fine_tune_lm(lm, sn.lm_data, epochs=(1, 1) if tiny else (1, 2))
    rows = []
    for name, (lr, dm) in CHOSEN.items():
        for bs, base in SCHEDULES:
            v, t, secs = train_classifier(sn, lm if name == 'ULMFiT' else None, config, None, seeds, lr, dm, bs, base)
            rows.append(dict(model=name, bs=bs, epochs=base, valid=round(v, 4), test=round(t, 4), seconds_per_model=round(secs, 1)))
            log(rows[-1])
    return rows

def main(tiny):
    print('torch threads:', set_threads())
    _, lm_vocab, config = load_lm(lm_path('imdb'))
    step = 20 if tiny else 1
    seeds = [0] if tiny else [0, 1, 2]
    t0 = time.perf_counter()
    imdb = numericalized('imdb', len(lm_vocab), step, vocab=lm_vocab)  # 12b's vocabulary
    docs = numericalized('python_docs', len(lm_vocab), step)
    sn = Snippets(4 if tiny else 1)
    n_imdb = sum(map(len, imdb[0]))
    log(f'12b shape {config}, vocabulary {len(lm_vocab):,}; IMDb training tokens {n_imdb:,}, documentation '
        f'{sum(map(len, docs[0])):,}; snippets: bigram perplexity on validation {sn.bigram_ppl:.1f} ({time.perf_counter() - t0:.0f} s)')
    budgets = [0, 20_000, 60_000] if tiny else [0, 500_000, 2_000_000, n_imdb]
    equal = budgets[2]
    res = {'config': config, 'vocab_size': len(lm_vocab), 'bigram_valid_perplexity': sn.bigram_ppl, 'probe': [], 'corpus': []}
    for corpus, (tr, va, vocab) in (('imdb', imdb), ('python_docs', docs)):
        for n in (budgets if corpus == 'imdb' else [equal]):
            model, secs, own_ppl = pretrain(tr, va, vocab, config, n, lr=1e-2)
            lm = sn.lm_for(model, vocab, config)
            snip_ppl = lm_perplexity(lm, sn.lm_data.valid_dl)
            feats = sn.features(lm)
            v100, t100, wd100 = sn.probe(feats, 25 if tiny else 100, seeds)
            vall, tall, wdall = sn.probe(feats, None, [0])
            row = dict(corpus=corpus if n else 'none', tokens=n, pretrain_seconds=round(secs, 1), own_valid_perplexity=round(own_ppl, 2),
                       snippet_valid_perplexity=round(snip_ppl, 2), probe_valid_100=round(v100, 4), probe_test_100=round(t100, 4),
                       probe_valid_all=round(vall, 4), probe_test_all=round(tall, 4), probe_l2=[wd100, wdall])
            res['probe'].append(row)
            log(row)
            if n == equal:
                uv, ut = ulmfit_at(sn, lm, config, 25 if tiny else 100, seeds)
                res['corpus'].append(dict(corpus=corpus, tokens=n, snippet_valid_perplexity=round(snip_ppl, 2),
                                          ulmfit_valid_100=round(uv, 4), ulmfit_test_100=round(ut, 4)))
                log(res['corpus'][-1])
            log(f'({time.perf_counter() - t0:.0f} s)')
    log('All labels: the batch size and epochs, on validation (seeds 0 and 1)')
    res['all_labels_schedule'] = all_labels_schedule(sn, seeds[:2], tiny)
    if not tiny: OUT.write_text(json.dumps(res, indent=1) + '\n')
    log(f'done in {time.perf_counter() - t0:.0f} s')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--tiny', action='store_true', help='a smoke run on slices; writes nothing')
    main(p.parse_args().tiny)
