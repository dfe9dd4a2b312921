"""Notebook 14a's GAN pieces: shapes, the trainer moving one player per step with its own optimizer, weight clipping,
the gradient penalty against finite differences, and the errors bad input gets."""
import pytest, torch
from torch import nn
from mylib.core import set_seed
from mylib.training import Dataset, DataBunch, get_dls
from mylib.callbacks import Callback, CancelTrainException
from mylib.learner import Learner
from mylib.optimizers import adam_opt
from mylib.gan import dc_generator, dc_critic, dcgan_init, GANModule, GANLoss, GANTrainer, gradient_penalty

def _data(n=64):
    x = torch.rand(n, 1, 32, 32) * 2 - 1
    return DataBunch(*get_dls(Dataset(x, torch.zeros(n)), Dataset(x[:8], torch.zeros(8)), 8))

def test_shapes():
    set_seed(0)
    g, c = dcgan_init(dc_generator(nz=16, nf=8)), dcgan_init(dc_critic(nf=8, bn=False))
    assert g(torch.randn(2, 16, 1, 1)).shape == (2, 1, 32, 32) and c(torch.zeros(2, 1, 32, 32)).shape == (2,)
    assert g(torch.randn(2, 16, 1, 1)).abs().max() <= 1

@pytest.mark.parametrize('n_crit,clip', [(1, None), (2, 0.01)])
def test_trainer_moves_one_player_per_step(n_crit, clip):
    set_seed(1)
    gan = GANModule(dcgan_init(dc_generator(nz=16, nf=8)), dcgan_init(dc_critic(nf=8)), nz=16)
    log = []
    class Watch(Callback):
        _order = 3
        def begin_batch(self):
            self.g = [p.detach().clone() for p in self.model.generator.parameters()]
            self.c = [p.detach().clone() for p in self.model.critic.parameters()]
        def after_step(self):
            log.append((any(not torch.equal(a, b) for a, b in zip(self.g, self.model.generator.parameters())),
                        any(not torch.equal(a, b) for a, b in zip(self.c, self.model.critic.parameters()))))
            if len(log) == 2 * (n_crit + 1): raise CancelTrainException()
    kind = 'gan' if clip is None else 'wgan'
    Learner(gan, _data(), GANLoss(gan, kind), opt_func=adam_opt(mom=0.5), lr=1e-3,
            cbs=[GANTrainer(adam_opt(mom=0.5), 1e-3, n_crit, clip), Watch()]).fit(1)
    assert log == ([(False, True)] * n_crit + [(True, False)]) * 2
    if clip is not None: assert all(p.abs().max() <= clip for p in gan.critic.parameters())
    assert all(p.requires_grad for p in gan.parameters()) and not gan.gen_mode  # restored after fit

def test_gradient_penalty_against_finite_differences():
    set_seed(2)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 1), nn.Flatten(0)).double()
    real, fake = torch.randn(4, 1, 2, 3, dtype=torch.float64), torch.randn(4, 1, 2, 3, dtype=torch.float64)
    set_seed(3); gp = gradient_penalty(critic, real, fake)
    set_seed(3); eps = torch.rand(4, 1, 1, 1)
    x = eps * real + (1 - eps) * fake
    h, fd = 1e-6, torch.zeros_like(x)
    for i in range(x.numel()):
        d = torch.zeros_like(x).view(-1); d[i] = h; d = d.view_as(x)
        with torch.no_grad(): fd.view(-1)[i] = (critic(x + d) - critic(x - d)).sum() / (2 * h)
    assert torch.allclose(gp, (fd.flatten(1).norm(dim=1) - 1).pow(2).mean(), atol=1e-8)

def test_bad_input_gets_a_clear_error():
    gan = GANModule(dc_generator(nz=4, nf=4), dc_critic(nf=4), nz=4)
    with pytest.raises(ValueError, match="'gan' or 'wgan'"): GANLoss(gan, 'lsgan')

def test_a_restorer_gan_reads_the_degraded_image_and_adds_the_pixel_loss():
    set_seed(4)
    restorer = torch.nn.Conv2d(1, 1, 3, padding=1)
    gan = GANModule(restorer, dc_critic(nf=4, bn=False), nz=None)
    degraded, real = torch.rand(4, 1, 32, 32), torch.rand(4, 1, 32, 32)
    gan.gen_mode = True
    pred = gan(torch.stack([degraded, real], 1))
    assert torch.equal(pred[2], real) and torch.allclose(pred[3], restorer(degraded))
    loss = GANLoss(gan, weights_gen=(1., 50.))(pred, None)
    adv = torch.nn.functional.binary_cross_entropy_with_logits(pred[1], torch.ones(4))
    assert torch.allclose(loss, adv + 50 * (pred[3] - real).pow(2).mean())
    with pytest.raises(ValueError, match=r'\(n, 2, c, h, w\)'): gan(real)

def test_a_pixel_loss_needs_a_restorer():
    gan = GANModule(dc_generator(nz=4, nf=4), dc_critic(nf=4), nz=4)
    with pytest.raises(ValueError, match='nz=None'): GANLoss(gan, weights_gen=(1., 50.))
