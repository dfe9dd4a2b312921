"""Does a longer language-model fine-tuning help 12c's classifier? Measured on the validation split.

12c fine-tunes the pretrained language model on the training fortunes for one epoch (embeddings only) and two (all
layers), taking the fortunes' validation perplexity from 221 to 65.6. This script runs 12c up to its classifier with
more or fewer epochs of the second stage (0: the embeddings only), then trains 12c's chosen classifier recipe over
three seeds from each fine-tuned encoder. Compare with benchmarks/ulmfit_search.txt (two epochs: validation 0.5923
mean) and 12c's classifier from scratch (0.5988). Full mode only; pass another language model file (for example the
one benchmarks/ulmfit_wordnet.py saves) as the first argument. Output: benchmarks/ulmfit_lm_epochs.txt.

    python benchmarks/ulmfit_lm_epochs.py [lm_file] [epochs ...]
"""
import sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ulmfit_search import notebook_setup, valid_seeds
from mylib.core import set_threads

def main(lm=None, epochs=(6,)):
    print('torch threads:', set_threads())
    for n in epochs:
        t = time.perf_counter()
        subs = [('lm_epochs = quick((1, 2), (1, 1))', f'lm_epochs = (1, {n})'),
                ('learn.fit(lm_epochs[1],', 'if lm_epochs[1]: learn.fit(lm_epochs[1],')]  # 0: the embeddings only
        ns = notebook_setup(lm, subs=subs)
        print(f"{lm or '12b language model'}, fine-tuned 1 + {n} epochs ({time.perf_counter() - t:.0f} s): fortunes' "
              f"validation perplexity {ns['ppl_before']:.1f} -> {ns['ppl_stage1']:.1f} -> {ns['ppl_after']:.1f}", flush=True)
        valid_seeds(ns)

if __name__ == '__main__':
    args = sys.argv[1:]
    lm = args.pop(0) if args and not args[0].isdigit() else None
    main(lm, [int(a) for a in args] or (6,))
