"""Notebook 14b's diffusion pieces: the schedule (and the betas it refuses), the closed-form forward process against
iterating single steps, the time-conditioned U-Net, the Noisify callback's task, and DDIM with eta = 1 over every step
against DDPM's ancestral sampler, written from a different formula."""
import pytest, torch
import torch.nn.functional as F
from mylib.core import set_seed
from mylib.training import Dataset, DataBunch, get_dls
from mylib.callbacks import Callback, CancelTrainException
from mylib.learner import Learner
from mylib.optimizers import adam_opt
from mylib.fp16 import AutocastCallback
from mylib.diffusion import linear_betas, NoiseSchedule, DiffusionUnet, Noisify, predict_noise, ddpm_sample, ddim_sample

def test_schedule_refuses_betas_outside_0_1():
    for bad, where in (([0.1, 0., 0.2], r'beta\[1\] = 0'), ([0.5, 1.0], r'beta\[1\] = 1'), ([-0.1], r'beta\[0\] = -0.1'),
                       ([0.1, float('nan')], r'beta\[1\] = nan'), (linear_betas(20), 'strictly between 0 and 1')):
        with pytest.raises(ValueError, match=where): NoiseSchedule(bad)
    with pytest.raises(ValueError, match='non-empty'): NoiseSchedule([])
    NoiseSchedule(linear_betas(21))  # the shortest linear schedule whose betas all stay below 1

def test_closed_form_is_the_iterated_process():
    sched = NoiseSchedule(linear_betas(50))
    # exactly: mean coefficient and variance of x_t given x_0, iterated step by step
    m, v = torch.tensor(1., dtype=torch.float64), torch.tensor(0., dtype=torch.float64)
    for t in range(sched.T):
        b = sched.betas[t].double()
        m, v = m * (1 - b).sqrt(), (1 - b) * v + b
        assert torch.allclose(m, sched.alpha_bar[t].double().sqrt(), atol=1e-6)
        assert torch.allclose(v, 1 - sched.alpha_bar[t].double(), atol=1e-6)
    # with zero noise both are deterministic: the image shrinks by sqrt(alpha_bar)
    x0 = torch.rand(3, 1, 4, 4)
    x = x0
    for t in range(10): x = sched.step(x, t, torch.zeros_like(x))
    assert torch.allclose(x, sched.noisify(x0, 9, torch.zeros_like(x0)), atol=1e-6)
    # a step per image broadcasts over the image's pixels
    eps = torch.randn_like(x0)
    xt = sched.noisify(x0, torch.tensor([0, 5, 49]), eps)
    for i, t in enumerate((0, 5, 49)): assert torch.allclose(xt[i], sched.noisify(x0[i], t, eps[i]))

def test_unet_shapes_and_sizes():
    set_seed(0)
    m = DiffusionUnet(30, nfs=(8, 16), t_dim=16)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([0, 29])
    assert m((x, t)).shape == x.shape
    with pytest.raises(ValueError, match='pad them to a multiple of 2'): m((torch.randn(2, 1, 27, 28), t))
    with pytest.raises(ValueError, match=r'steps must be from 0 to T-1 \(29\), got 0 to 30'): m((x, torch.tensor([0, 30])))
    # the time step changes the output: the network knows the noise level
    assert not torch.allclose(m((x[:1], t[:1])), m((x[:1], t[1:])))

def test_noisify_sets_the_task():
    sched = NoiseSchedule(linear_betas(30))
    seen = {}
    class Look(Callback):
        _order = 5
        def begin_batch(self): seen.update(xb=self.xb, yb=self.yb); raise CancelTrainException()
    x = torch.rand(16, 1, 8, 8)
    data = DataBunch(*get_dls(Dataset(x, torch.zeros(16)), Dataset(x[:4], torch.zeros(4)), 8))
    Learner(DiffusionUnet(30, nfs=(8, 16), t_dim=16), data, F.mse_loss, opt_func=adam_opt(), cbs=[Noisify(sched), Look()]).fit(1)
    (xt, t), eps = seen['xb'], seen['yb']
    assert xt.shape == eps.shape == (8, 1, 8, 8) and t.shape == (8,) and t.dtype == torch.long and 0 <= t.min() <= t.max() < 30
    # each x_t is one of the batch's clean images, noised in closed form with the target noise at its step
    for i in range(8):
        assert any(torch.allclose(xt[i], sched.noisify(x0, t[i].item(), eps[i]), atol=1e-6) for x0 in x)

def test_training_step_under_bfloat16_autocast_with_a_tuple_input():
    set_seed(0)
    sched, x = NoiseSchedule(linear_betas(30)), torch.rand(16, 1, 8, 8) * 2 - 1
    data = DataBunch(*get_dls(Dataset(x, torch.zeros(16)), Dataset(x[:4], torch.zeros(4)), 8))
    m = DiffusionUnet(30, nfs=(8, 16), t_dim=16)
    before = [p.detach().clone() for p in m.parameters()]
    dtypes = []  # what the convolutions computed in, while training
    h = m.stem.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype) if mod.training else None)
    learn = Learner(m, data, F.mse_loss, opt_func=adam_opt(), lr=1e-3, cbs=[Noisify(sched), AutocastCallback(channels_last=False)])
    learn.fit(1)
    h.remove()
    assert dtypes and set(dtypes) == {torch.bfloat16}, dtypes  # the tuple input did not keep autocast from starting
    assert all(torch.isfinite(p).all() for p in m.parameters())
    assert all(p.dtype == torch.float32 for p in m.parameters())  # the weights stay float32
    assert sum(not torch.equal(a, p) for a, p in zip(before, m.parameters())) > len(before) // 2  # and they trained

def test_ddim_with_eta_1_over_every_step_is_ddpm():
    set_seed(0)
    sched, m = NoiseSchedule(linear_betas(30)), DiffusionUnet(30, nfs=(8, 16), t_dim=16).eval()
    g = lambda s: torch.Generator().manual_seed(s)
    x = torch.randn(3, 1, 8, 8, generator=g(1))
    a = ddpm_sample(m, sched, x, generator=g(2), bf16=False)
    b = ddim_sample(m, sched, x, 30, eta=1., clip=False, generator=g(2), bf16=False)
    assert torch.allclose(a, b, atol=1e-4)
    # deterministic with eta = 0, and the batch size of the predictions does not matter
    c1, c2 = ddim_sample(m, sched, x, 5, clip=True, bf16=False), ddim_sample(m, sched, x, 5, clip=True, bs=1, bf16=False)
    assert torch.allclose(c1, c2, atol=1e-3) and c1.abs().max() <= 1 + 1e-5  # x0 clipped at the last step
    for bad in (0, 31):
        with pytest.raises(ValueError, match='steps must be from 1 to T'): ddim_sample(m, sched, x, bad)
    assert predict_noise(m, x, 3, bs=2, bf16=False).shape == x.shape
