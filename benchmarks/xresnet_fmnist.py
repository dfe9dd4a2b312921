"""Train an XResNet with notebook 11's recipe, from an image tree decoded into memory, and score it.

The recipe is `mylib.xresnet.cnn_learner`'s: Adam with decoupled weight decay, one-cycle to `--lr` with momentum
cycling, label-smoothing cross entropy, batch crop-with-padding and left-right flip, bfloat16 autocast + channels_last.
The data is Fashion-MNIST's image tree (`get_image_folder('fashion_mnist')`): 50,000 training images, the 10,000 that
`get_splits()` holds out for validation, and the official 10,000 test images. `--data imagenette2-160` (or another
key of `mylib.datasets.IMAGENETTE_URLS`) downloads and trains on the real Imagenette instead, where the network
allows, with a seeded 10% of its training folder held out. Data and learner come from the training script's module
(`mylib.train_imagenette.load_data` and `recipe_learner`), so this trains exactly what the script trains.

Two modes:

  --search   trains each candidate of `--candidates` and prints its validation (held out) accuracy; then scores the
             best of them (and only it) once on the test split. This is how the recipe of notebook 11 was chosen.
  (default)  trains once, chooses the test-time augmentation (none, flip, flip and one-pixel shifts) on the
             validation split, then scores the official test split once. Prints the training time (validation passes included), images per second, both accuracies.

Output committed beside this script: xresnet_fmnist_search.txt (the choice of notebook 11's five-minute recipe, and
its test accuracy) and xresnet_fmnist_30min.txt (a deeper network trained for about half an hour).

    python benchmarks/xresnet_fmnist.py [--epochs 11] [--arch xresnet_fmnist] [--layers 1,1,1,1] [--lr 6e-3] [--wd 0.05] [--bs 256] [--pad 2]
                                        [--mixup 0] [--seed 0] [--no-bf16] [--threads N] [--data fashion_mnist]
    python benchmarks/xresnet_fmnist.py --search [--candidates "name:arch:layers:epochs:lr[:arch_arg=v,v;...]" ...]
"""
import argparse, time
import torch

from mylib.core import set_seed, set_threads
from mylib.training import accuracy
from mylib import xresnet
from mylib.train_imagenette import load_data, recipe_learner

# each trains in about five minutes on the 2-core machine: a single-conv stem is about 16% faster, so two more epochs;
# the ImageNet layout is about half as fast, so fewer
DEFAULT_CANDIDATES = ['xresnet_fmnist-lr3e-3:xresnet_fmnist:-:11:3e-3', 'xresnet_fmnist-lr6e-3:xresnet_fmnist:-:11:6e-3',
                      'xresnet_fmnist-one-conv-stem:xresnet_fmnist:-:13:3e-3:stem=32;stem_strides=2',
                      'xresnet18-imagenet-layout:xresnet18:-:5:3e-3']


def load(name, bs):
    "The data, as the training script loads it: Fashion-MNIST's tree with get_splits' held-out rows, or an Imagenette at 128 px."
    start = time.perf_counter()
    data, test_dl = load_data(name, bs, num_workers=2)
    print(f'{name}: {data}; test {len(test_dl.dataset)} images; decoded in {time.perf_counter() - start:.1f} s', flush=True)
    return data, test_dl


def train(data, arch, layers, epochs, lr, wd, pad, mixup, bf16, seed, **arch_kwargs):
    "The training script's learner trained for `epochs`; returns it and the seconds `fit` took."
    set_seed(seed)
    if layers is not None: arch_kwargs['layers'] = layers
    learn = recipe_learner(data, arch, lr, wd, pad, mixup, bf16, **arch_kwargs)
    start = time.perf_counter()
    learn.fit(epochs)
    return learn, time.perf_counter() - start


TTA = {'none': False, 'flip': True, 'flip+shifts': xresnet.tta_views()}


def valid_scores(learn):
    "Validation accuracy with each test-time augmentation of TTA."
    res = {}
    for name, tta in TTA.items():
        p, t = xresnet.get_preds(learn, tta=tta)
        res[name] = accuracy(p, t).item()
    return res


def show(scores): return ', '.join(f'TTA {k} {v:.4f}' for k, v in scores.items())


def parse_layers(s): return None if s in ('-', '') else tuple(int(v) for v in s.split(','))


def parse_kwargs(s):
    "Architecture arguments written k=1,2;k2=3 as a dict of tuples of ints."
    return {k: tuple(int(v) for v in vs.split(',')) for k, vs in (kv.split('=') for kv in s.split(';') if kv)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', default='fashion_mnist', help='fashion_mnist (offline) or an Imagenette key (downloads)')
    ap.add_argument('--arch', default='xresnet_fmnist', help='a function of mylib.xresnet: xresnet_fmnist, xresnet18, ...')
    ap.add_argument('--layers', default='-', help="blocks per stage for the architecture, or '-' for its default")
    ap.add_argument('--epochs', type=int, default=11)
    ap.add_argument('--lr', type=float, default=6e-3, help='the peak of the one-cycle schedule (6e-3: chosen by --search)')
    ap.add_argument('--wd', type=float, default=0.05, help="Adam's decoupled weight decay")
    ap.add_argument('--bs', type=int, default=256)
    ap.add_argument('--pad', type=int, default=2, help='padding of the random crop, in pixels')
    ap.add_argument('--mixup', type=float, default=0., help='MixUp alpha; 0 for none')
    ap.add_argument('--no-bf16', dest='bf16', action='store_false', help='train in float32')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: all cores, or $MYLIB_THREADS)')
    ap.add_argument('--search', action='store_true', help='train each candidate, compare on validation, score only the best on test')
    ap.add_argument('--candidates', nargs='*', default=DEFAULT_CANDIDATES,
                    help='for --search: name:arch:layers:epochs:lr[:arg=1,2;arg2=3], layers as 1,1,1,1 or - for the default')
    a = ap.parse_args()
    set_threads(a.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads', flush=True)
    data, test_dl = load(a.data, a.bs)
    if a.search:
        results = []
        for cand in a.candidates:
            name, arch, layers, epochs, lr, *extra = cand.split(':')
            kw = parse_kwargs(extra[0]) if extra else {}
            learn, secs = train(data, arch, parse_layers(layers), int(epochs), float(lr), a.wd, a.pad, a.mixup, a.bf16,
                                a.seed, **kw)
            scores = valid_scores(learn)
            print(f'candidate {name}: {arch} layers={layers} {kw or ""} epochs={epochs} lr={lr}: {secs:.0f} s, '
                  f'valid (held out) accuracy: {show(scores)}', flush=True)
            tta = max(scores, key=scores.get)
            results.append((scores[tta], tta, name, learn))
            del learn
        best_acc, tta, name, learn = max(results, key=lambda r: r[0])
        print(f'chosen on validation: {name} with TTA {tta} (valid {best_acc:.4f})')
    else:
        learn, secs = train(data, a.arch, parse_layers(a.layers), a.epochs, a.lr, a.wd, a.pad, a.mixup, a.bf16, a.seed)
        scores = valid_scores(learn)
        tta = max(scores, key=scores.get)
        print(f'{a.arch} layers={a.layers} epochs={a.epochs} lr={a.lr} wd={a.wd} pad={a.pad} mixup={a.mixup} '
              f'bf16={a.bf16} seed={a.seed}')
        print(f'training: {secs:.0f} s (validation passes included), {a.epochs * len(data.train_ds) / secs:,.0f} images/s')
        print(f'valid (held out) accuracy: {show(scores)} -> TTA {tta}')
    p, t = xresnet.get_preds(learn, test_dl, tta=TTA[tta])
    print(f'test (official) accuracy {accuracy(p, t).item():.4f}  (scored once)')

if __name__ == '__main__':
    main()
