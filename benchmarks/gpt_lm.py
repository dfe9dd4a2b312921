"""The GPT language model's peak learning rate, for notebook 13a, chosen from runs as long as the notebook's.

13a trains a GPT (width 128, 4 layers of 4 heads, learned positions) on 12b's IMDb reviews for a fixed number of
seconds, one-cycle laid over them. Which peak learning rate is best depends on the length of the run, so the
candidates are trained here for exactly that many seconds and scored on held-out reviews that the notebook does not
report on (the 150 after its 400). The chosen rate and every candidate's perplexity go to benchmarks/gpt_lm.json,
which 13a reads; the committed run's output is benchmarks/gpt_lm.txt.

    python benchmarks/gpt_lm.py              # 3 candidates x 120 s, about 8 minutes on 2 quiet cores
    python benchmarks/gpt_lm.py --tiny       # a smoke run on slices, writes nothing
"""
import argparse, json, time
from pathlib import Path
from mylib.core import set_seed, set_threads
from mylib.corpora import lm_corpus
from mylib.text import tokenize, NumericalizeProcessor, get_lm_dls, LM_PreLoader
from mylib.training import DataLoader
from mylib.schedules import sched_1cycle
from mylib.ulmfit import rnn_learner, TimeBudget, lm_perplexity
from mylib.attention import GPT

OUT = Path(__file__).resolve().parent/'gpt_lm.json'
N_EVAL, N_CHOICE = 400, 150  # the notebook reports on the first 400 held-out reviews; the choice uses the next 150

def train_gpt(data, vocab_sz, bptt, lr, secs, seed=0):
    "13a's GPT trained for `secs` seconds, one-cycle to peak `lr` (12b's schedule)."
    set_seed(seed)
    model = GPT(vocab_sz, d=128, n_heads=4, n_layers=4, max_len=bptt, p=0.1)
    learn = rnn_learner(model, data, alpha=0., beta=0., clip=1.)
    lr_sched, mom_sched = sched_1cycle(lr, pct=0.25, moms=(0.8, 0.7, 0.8))
    set_seed(seed + 1); learn.fit(1000, cbs=[TimeBudget(secs, {'lr': lr_sched, 'mom': mom_sched})])
    return model

def main(tiny=False, seconds=120, lrs=(1e-3, 3e-3, 1e-2)):
    set_threads()
    step = 50 if tiny else 1
    train_texts, valid_texts = lm_corpus('imdb')
    train_ids_toks = tokenize(train_texts[::step], show_progress=False)
    valid_toks = tokenize(valid_texts[::step], show_progress=False)
    num = NumericalizeProcessor(max_vocab=500 if tiny else 6000)
    train_ids, valid_ids = num.process(train_ids_toks), num.process(valid_toks)
    bs, bptt, secs = (16, 35, 4) if tiny else (64, 70, seconds)
    n_eval, n_choice = (10, 5) if tiny else (N_EVAL, N_CHOICE)
    data = get_lm_dls(train_ids, valid_ids[:n_eval], bs, bptt)
    choice_dl = DataLoader(LM_PreLoader(valid_ids[n_eval:n_eval + n_choice], bs, bptt), bs)
    print(f'vocabulary {len(num.vocab):,}; choice reviews {n_eval}..{n_eval + n_choice - 1} of the held-out split, '
          f'{sum(map(len, valid_ids[n_eval:n_eval + n_choice])):,} tokens; {secs} s per candidate', flush=True)
    ppl = {}
    for lr in lrs:
        t0 = time.perf_counter()
        ppl[lr] = lm_perplexity(train_gpt(data, len(num.vocab), bptt, lr, secs), choice_dl)
        print(f'peak lr {lr:g}: perplexity on the choice reviews {ppl[lr]:.1f} ({time.perf_counter() - t0:.0f} s)', flush=True)
    best = min(ppl, key=ppl.get)
    print(f'chosen: {best:g}')
    if not tiny:
        OUT.write_text(json.dumps({'seconds': secs, 'chosen_lr': best, 'perplexity': {f'{k:g}': round(v, 2) for k, v in ppl.items()},
                                   'choice_reviews': [n_eval, n_eval + n_choice]}, indent=1) + '\n')
        print(f'wrote {OUT}')

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--tiny', action='store_true', help='a smoke run on slices; writes nothing')
    ap.add_argument('--seconds', type=int, default=120, help="seconds per candidate: the notebook's")
    a = ap.parse_args()
    main(a.tiny, a.seconds)
