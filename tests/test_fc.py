"Tests for mylib.fc: hand-written backward passes against autograd, and clear errors for bad shapes."
import pytest
import torch
import torch.nn.functional as F

import mylib.core as core
from mylib.fc import Lin, Model, Module, Mse, Relu

def _gen(seed): return torch.Generator().manual_seed(seed)

def _weights(n_in, nh, n_out, g, dtype=torch.float64):
    return [torch.randn(n_in, nh, generator=g, dtype=dtype), torch.randn(nh, generator=g, dtype=dtype),
            torch.randn(nh, n_out, generator=g, dtype=dtype), torch.randn(n_out, generator=g, dtype=dtype)]

# --- Model: hand backward == autograd -------------------------------------------------------------------------

@pytest.mark.parametrize('n,n_in,nh', [(1, 3, 2), (7, 5, 4), (64, 20, 16), (200, 784, 50)])
def test_model_backward_matches_autograd(n, n_in, nh):
    g = _gen(n * 1000 + n_in + nh)
    ws = _weights(n_in, nh, 1, g)
    x, y = torch.randn(n, n_in, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
    model = Model(*ws)
    loss = model(x, y)
    model.backward()
    # autograd on fresh leaves, with PyTorch's own ops
    aw = [w.clone().requires_grad_() for w in ws]
    ax = x.clone().requires_grad_()
    out = torch.relu(ax @ aw[0] + aw[1]) @ aw[2] + aw[3]
    loss_ag = F.mse_loss(out.squeeze(-1), y)
    loss_ag.backward()
    core.test_near(loss, loss_ag, atol=1e-12, rtol=1e-10)
    for w, a in zip(ws, aw): core.test_near(w.g, a.grad, atol=1e-10, rtol=1e-8)
    core.test_near(x.g, ax.grad, atol=1e-10, rtol=1e-8)

def test_model_backward_float32():
    g = _gen(3)
    ws = _weights(30, 10, 1, g, dtype=torch.float32)
    x, y = torch.randn(50, 30, generator=g), torch.randint(0, 10, (50,), generator=g).float()
    model = Model(*ws)
    model(x, y); model.backward()
    aw = [w.clone().requires_grad_() for w in ws]
    F.mse_loss((torch.relu(x @ aw[0] + aw[1]) @ aw[2] + aw[3]).squeeze(-1), y).backward()
    for w, a in zip(ws, aw): core.test_near(w.g, a.grad)

def test_model_backward_uses_last_call():
    g = _gen(4)
    ws = _weights(6, 5, 1, g)
    model = Model(*ws)
    x1, x2 = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(9, 6, generator=g, dtype=torch.float64)
    y1, y2 = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(9, generator=g, dtype=torch.float64)
    model(x1, y1); model(x2, y2); model.backward()
    assert x2.g.shape == x2.shape and not hasattr(x1, 'g')
    w0 = ws[0].clone().requires_grad_()
    F.mse_loss((torch.relu(x2 @ w0 + ws[1]) @ ws[2] + ws[3]).squeeze(-1), y2).backward()
    core.test_near(ws[0].g, w0.grad, atol=1e-10, rtol=1e-8)

def test_model_parameters_and_sgd_step_lowers_loss():
    g = _gen(5)
    ws = [w * 0.1 for w in _weights(8, 16, 1, g)]
    x = torch.randn(100, 8, generator=g, dtype=torch.float64)
    y = x[:, 0] - 2 * x[:, 1]
    model = Model(*ws)
    assert all(p is w for p, w in zip(model.parameters(), ws))
    before = model(x, y).item()
    for _ in range(20):
        model(x, y); model.backward()
        for p in model.parameters(): p -= 0.05 * p.g
    assert model(x, y).item() < before

# --- the layers one by one --------------------------------------------------------------------------------------

def test_lin_backward_with_leading_dims():
    g = _gen(6)
    w, b = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    x = torch.randn(2, 4, 5, generator=g, dtype=torch.float64)
    lin = Lin(w, b)
    out = lin(x)
    out.g = torch.randn(out.shape, generator=g, dtype=torch.float64)
    lin.backward()
    aw, ab, ax = w.clone().requires_grad_(), b.clone().requires_grad_(), x.clone().requires_grad_()
    (ax @ aw + ab).backward(out.g)
    core.test_near(w.g, aw.grad); core.test_near(b.g, ab.grad); core.test_near(x.g, ax.grad)

def test_relu_mask_matches_torch_at_zero():
    x = torch.tensor([-2., -0., 0., 1e-30, 3.])
    r = Relu()
    out = r(x)
    out.g = torch.ones_like(out)
    r.backward()
    xa = x.clone().requires_grad_()
    torch.relu(xa).sum().backward()
    core.test_near(out, torch.relu(x))
    assert torch.equal(x.g, xa.grad)

@pytest.mark.parametrize('pshape,tshape', [((6, 1), (6,)), ((6,), (6,)), ((6, 3), (6, 3))])
def test_mse_matches_torch(pshape, tshape):
    g = _gen(7)
    p, t = torch.randn(pshape, generator=g, dtype=torch.float64), torch.randn(tshape, generator=g, dtype=torch.float64)
    mse = Mse()
    loss = mse(p, t)
    mse.backward()
    pa = p.clone().requires_grad_()
    ref = F.mse_loss(pa.reshape(t.shape), t)
    ref.backward()
    core.test_near(loss, ref, atol=1e-12)
    assert p.g.shape == p.shape
    core.test_near(p.g, pa.grad, atol=1e-12)

# --- bad input --------------------------------------------------------------------------------------------------

def test_lin_rejects_wrong_input_features():
    lin = Lin(torch.randn(784, 50), torch.zeros(50))
    with pytest.raises(ValueError, match=r'28 features.*784 rows'):
        lin(torch.randn(3, 28, 28))  # images not flattened
    with pytest.raises(ValueError, match=r'50 features.*784 rows'):
        lin(torch.randn(3, 50))
    with pytest.raises(ValueError, match='Lin'):
        lin(torch.tensor(1.))

def test_lin_rejects_bad_weights():
    with pytest.raises(ValueError, match=r'got w \(50, 784\) and b \(50,\)'):
        Lin(torch.randn(50, 784), torch.zeros(50))  # weight transposed
    with pytest.raises(ValueError, match='Lin'):
        Lin(torch.randn(784), torch.zeros(1))

def test_mse_rejects_batch_size_mismatch():
    with pytest.raises(ValueError, match=r'same batch size.*\(10, 1\) and \(20,\)'):
        Mse()(torch.randn(10, 1), torch.randn(20))
    with pytest.raises(ValueError, match='batch size'):
        Mse()(torch.randn(5), torch.randn(4))
    with pytest.raises(ValueError, match='Mse'):
        Mse()(torch.tensor(1.), torch.randn(1))

def test_mse_rejects_shapes_that_would_broadcast():
    # (n, 1, 1) - (n,) or (n, 2) - (n,) would broadcast silently into a wrong loss
    with pytest.raises(ValueError, match='does not match'):
        Mse()(torch.randn(10, 1, 1), torch.randn(10))
    with pytest.raises(ValueError, match='does not match'):
        Mse()(torch.randn(10, 2), torch.randn(10))

def test_module_backward_before_call_and_missing_methods():
    with pytest.raises(RuntimeError, match='call the module'):
        Relu().backward()
    class NoForward(Module): pass
    with pytest.raises(NotImplementedError, match='NoForward must define forward'):
        NoForward()(torch.ones(1))
    class NoBwd(Module):
        def forward(self, x): return x * 2
    m = NoBwd(); m(torch.ones(1))
    with pytest.raises(NotImplementedError, match='NoBwd must define bwd'):
        m.backward()
