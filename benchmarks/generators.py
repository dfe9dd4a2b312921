"""Notebooks 14a and 14b compare generators trained for the same seconds from one seed each; this repeats the
comparison over other seeds, to show whether the differences hold.

For seeds 1, 2 and 3: 14a's DCGAN (Adam β1 = 0.5) and 14b's DDPM U-Net, each trained 135 s exactly as in its
notebook, scored by FID on 2,000 samples against the first 2,000 test images (11's classifier's features; the floor
is 2,000 real training images), DDPM sampled with all 100 steps and with DDIM at 20 steps, η = 1. Prints each run,
the mean and standard deviation of each FID, and the per-seed differences. The committed run's output is
benchmarks/generators.txt.

    python benchmarks/generators.py              # 3 seeds, about 21 minutes on 2 quiet cores
    python benchmarks/generators.py --tiny       # a smoke run: 2 s of training, 300 samples, one seed
"""
import argparse, time
import torch
import torch.nn.functional as F
from mylib.core import set_seed, set_threads, mean_sd, paired_diff
from mylib.datasets import get_splits
from mylib.training import Dataset, DataBunch, get_dls
from mylib.learner import Learner
from mylib.optimizers import adam_opt
from mylib.schedules import sched_1cycle
from mylib.fp16 import AutocastCallback
from mylib.ulmfit import TimeBudget
from mylib.unet import fashion_classifier
from mylib.fid import FID
from mylib.gan import dc_generator, dc_critic, dcgan_init, GANModule, GANLoss, GANTrainer
from mylib.diffusion import NoiseSchedule, linear_betas, DiffusionUnet, Noisify, ddpm_sample, ddim_sample

def dcgan(x_train, x_valid, secs, seed):
    "14a's DCGAN with β1 = 0.5, trained `secs` seconds on `x_train` (in [0, 1]); its samples' maker."
    to_gan = lambda x: F.pad(x * 2 - 1, (2, 2, 2, 2), value=-1.)
    data = DataBunch(*get_dls(Dataset(to_gan(x_train), torch.zeros(len(x_train))), Dataset(to_gan(x_valid[:64]), torch.zeros(64)), 64))
    set_seed(seed)
    gan = GANModule(dcgan_init(dc_generator()), dcgan_init(dc_critic()))
    opt_func = adam_opt(mom=0.5, sqr_mom=0.999, wd=0.)
    Learner(gan, data, GANLoss(gan), opt_func=opt_func, lr=2e-4, cbs=[TimeBudget(secs), GANTrainer(opt_func, 2e-4)]).fit(1000)
    g = gan.generator.eval()
    @torch.no_grad()
    def sample(n, seed):
        z = torch.randn(n, gan.nz, 1, 1, generator=torch.Generator().manual_seed(seed))
        return ((g(z)[..., 2:30, 2:30] + 1) / 2).clamp(0, 1)
    return sample

def ddpm(x_train, x_valid, secs, seed, T=100):
    "14b's DDPM U-Net trained `secs` seconds; its samplers: all T steps, and DDIM at 20 steps with η = 1."
    sched = NoiseSchedule(linear_betas(T))
    data = DataBunch(*get_dls(Dataset(x_train * 2 - 1, torch.zeros(len(x_train))), Dataset(x_valid * 2 - 1, torch.zeros(len(x_valid))), 128))
    set_seed(seed)
    model = DiffusionUnet(T)
    lr_sched, mom_sched = sched_1cycle(2e-3, pct=0.1, moms=(0.95, 0.85, 0.95))
    Learner(model, data, F.mse_loss, opt_func=adam_opt(wd=0.), lr=2e-3,
            cbs=[Noisify(sched), TimeBudget(secs, {'lr': lr_sched, 'mom': mom_sched}), AutocastCallback(channels_last=False)]).fit(1000)
    model.eval()
    noise = lambda n, s: torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(s))
    gen = lambda s: torch.Generator().manual_seed(s + 1)
    out = lambda x: ((x + 1) / 2).clamp(0, 1)
    return {'DDPM': lambda n, s: out(ddpm_sample(model, sched, noise(n, s), generator=gen(s))),
            'DDIM 20, eta 1': lambda n, s: out(ddim_sample(model, sched, noise(n, s), 20, eta=1., generator=gen(s)))}

def main(tiny=False):
    set_threads()
    secs, n, seeds = (2, 300, (1,)) if tiny else (135, 2000, (1, 2, 3))
    x_train, _, x_valid, _, x_test, _ = [t.view(-1, 1, 28, 28) if t.ndim == 2 else t for t in get_splits()]
    mean, std = x_train.double().mean().item(), x_train.double().std().item()
    fid = FID(fashion_classifier(train_epochs=1, n_train=5000) if tiny else fashion_classifier(), x_test[:n], mean, std)
    print(f'floor, {n:,} real training images: FID {fid(x_train[:n]):.3f}', flush=True)
    scores = {'DCGAN': [], 'DDPM': [], 'DDIM 20, eta 1': []}
    for seed in seeds:
        t0 = time.perf_counter()
        scores['DCGAN'].append(fid(dcgan(x_train, x_valid, secs, seed)(n, 123 + seed)))
        print(f'seed {seed}: DCGAN FID {scores["DCGAN"][-1]:.3f} ({time.perf_counter() - t0:.0f} s)', flush=True)
        for name, sample in ddpm(x_train, x_valid[:2000], secs, seed).items():
            t0 = time.perf_counter()
            scores[name].append(fid(sample(n, 123 + seed)))
            print(f'seed {seed}: {name} FID {scores[name][-1]:.3f} (sampled in {time.perf_counter() - t0:.0f} s)', flush=True)
    for name, xs in scores.items():
        m, sd = mean_sd(xs)
        print(f'{name:>15}: FID {m:.3f} ± {sd:.3f} over seeds {list(seeds)} ({", ".join(f"{x:.3f}" for x in xs)})')
    for a, b in (('DCGAN', 'DDPM'), ('DDIM 20, eta 1', 'DDPM')):
        m, sd, se = paired_diff(scores[a], scores[b])
        print(f'{a} − {b}: {m:+.3f} (sd {sd:.3f}, standard error {se:.3f})')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--tiny', action='store_true', help='a smoke run: 2 s of training, 300 samples, one seed')
    main(**vars(p.parse_args()))
