"""The GPU path, skipped where there is no CUDA device: notebook 09b's CNN, 10c's float16 `MixedPrecision` (its loss
scale against `torch.amp.GradScaler`, as 10c checks on the CPU) and 11's `cnn_learner`, each trained a few steps on
the GPU; and a notebook run in quick mode, as a student would, that must put its model on the GPU by itself."""
import json, os, subprocess, sys
from functools import partial
from pathlib import Path
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mylib.core import set_seed
from mylib.datasets import get_splits
from mylib.training import Dataset, DataBunch, get_dls, accuracy
from mylib.callbacks import Callback
from mylib.conv import DeviceCallback
from mylib.stats import AvgStatsCallback
from mylib.learner import Learner, get_learner
from mylib.optimizers import adam_opt, sgd_opt
from mylib.fp16 import MixedPrecision
from mylib.xresnet import cnn_learner, xresnet_fmnist

DEVICE = os.environ.get('MYLIB_GPU_TEST_DEVICE', 'cuda')  # 'cpu' only to dry-run this file on a machine without one
pytestmark = pytest.mark.skipif(DEVICE == 'cuda' and not torch.cuda.is_available(),
                                reason='no CUDA device: the GPU path is checked where there is one')
NBS = Path(__file__).resolve().parent.parent/'nbs'

def fmnist(n_train=1024, n_valid=512, bs=128):
    "A slice of Fashion-MNIST, normalized, as 1x28x28 images."
    x_train, y_train, x_valid, y_valid, _, _ = get_splits()
    m, s = x_train.mean(), x_train.std()
    img = lambda x: ((x - m) / s).view(-1, 1, 28, 28)
    return DataBunch(*get_dls(Dataset(img(x_train[:n_train]), y_train[:n_train]),
                              Dataset(img(x_valid[:n_valid]), y_valid[:n_valid]), bs), c=10, c_in=1)

def test_09b_cnn_trains_on_the_gpu():
    set_seed(0)
    learn = get_learner([8, 16, 32, 64], fmnist(), lr=1e-2, opt_func=adam_opt(), bn=True, cbs=[DeviceCallback(DEVICE)],
                        cb_funcs=partial(AvgStatsCallback, [accuracy]))
    learn.avg_stats.show = False
    learn.fit(2)
    assert next(learn.model.parameters()).device.type == DEVICE
    hist = learn.avg_stats.history
    assert hist[-1]['train_loss'] < hist[0]['train_loss'] and hist[-1]['valid_accuracy'] > 0.5

class InjectInf(Callback):
    "An inf in the model's first gradient at the training steps in `steps`, before MixedPrecision reads it."
    _order = 50
    def __init__(self, steps): self.steps, self.k = set(steps), 0
    def after_backward(self):
        if self.k in self.steps: next(self.model.parameters()).grad.view(-1)[0] = float('inf')
        self.k += 1

def small_cnn():
    return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 10))

def test_10c_float16_mixed_precision_on_the_gpu_matches_grad_scaler():
    steps, n = {1, 2, 6}, 3
    data = fmnist(n_train=1024, bs=128)
    set_seed(0)
    learn = Learner(small_cnn(), data, F.cross_entropy, opt_func=sgd_opt(), lr=1e-2, cbs=[DeviceCallback(DEVICE)])
    mp = MixedPrecision(init_scale=2.**8, scale_wait=n)
    learn.fit(1, cbs=[mp, InjectInf(steps)])
    assert {p.dtype for p in learn.model.parameters()} == {torch.float32}  # float32 again after the fit
    assert all(torch.isfinite(p).all() for p in learn.model.parameters()) and mp.n_skipped == len(steps)
    set_seed(0)
    m = small_cnn().to(DEVICE)
    opt = torch.optim.SGD(m.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler(DEVICE, init_scale=2.**8, growth_factor=2., backoff_factor=0.5, growth_interval=n)
    ref = []
    for k, (xb, yb) in enumerate(data.train_dl):
        with torch.autocast(DEVICE, dtype=torch.float16):
            loss = F.cross_entropy(m(xb.to(DEVICE)), yb.to(DEVICE))
        scaler.scale(loss).backward()
        if k in steps: next(m.parameters()).grad.view(-1)[0] = float('inf')
        ref.append(scaler.get_scale()); scaler.step(opt); scaler.update(); opt.zero_grad()
    assert mp.scales == ref

def test_11_cnn_learner_trains_on_the_gpu():
    set_seed(0)
    device = None if DEVICE == 'cuda' else DEVICE  # None, the default: the GPU if there is one
    learn = cnn_learner(xresnet_fmnist, fmnist(n_train=2048), lr=6e-3, device=device)
    learn.avg_stats.show = False
    learn.fit(2)
    assert next(learn.model.parameters()).device.type == DEVICE
    assert learn.avg_stats.history[-1]['valid_accuracy'] > 0.5

RUN_NB = """
import sys
from execnb.nbio import read_nb
from execnb.shell import CaptureShell
sh = CaptureShell()
sh.run_all(read_nb(sys.argv[1]), exc_stop=True)
print('DEVICE', next(sh.user_ns['learn'].model.parameters()).device.type)
"""

@pytest.mark.time_limit(600)
def test_a_notebook_quick_run_puts_its_model_on_the_gpu(tmp_path):
    env = {**os.environ, 'MYLIB_QUICK': '1', 'MYLIB_RESULTS': str(tmp_path/'results.json')}
    out = subprocess.run([sys.executable, '-c', RUN_NB, '11_train_imagenette.ipynb'], cwd=NBS, env=env,
                         capture_output=True, text=True, timeout=580)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f'DEVICE {"cuda" if DEVICE == "cuda" else "cpu"}' in out.stdout
