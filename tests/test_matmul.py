"Tests for mylib.matmul: agreement with `@` and clear errors for bad shapes."
import pytest
import torch

import mylib.core as core
from mylib.matmul import matmul

SHAPES = [(1, 1, 1), (1, 5, 1), (1, 7, 3), (4, 7, 1), (3, 1, 4), (5, 6, 7), (16, 32, 8), (1, 64, 10), (10, 64, 1)]

@pytest.mark.parametrize('n,k,m', SHAPES, ids=[f'{n}x{k}@{k}x{m}' for n, k, m in SHAPES])
def test_matmul_matches_torch(n, k, m):
    g = torch.Generator().manual_seed(n * 10000 + k * 100 + m)
    a, b = torch.randn(n, k, generator=g), torch.randn(k, m, generator=g)
    c = matmul(a, b)
    assert c.shape == (n, m) and c.dtype == torch.float32
    core.test_near(c, a @ b)

def test_matmul_random_shapes():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        n, k, m = (int(v) for v in torch.randint(1, 20, (3,), generator=g))
        a, b = torch.randn(n, k, generator=g, dtype=torch.float64), torch.randn(k, m, generator=g, dtype=torch.float64)
        c = matmul(a, b)
        assert c.dtype == torch.float64
        core.test_near(c, a @ b, atol=1e-10, rtol=1e-10)

def test_matmul_hand_computed():
    a = torch.tensor([[1., 2.], [3., 4.]])
    b = torch.tensor([[5., 6., 7.], [8., 9., 10.]])
    core.test_eq(matmul(a, b), torch.tensor([[21., 24., 27.], [47., 54., 61.]]))

def test_matmul_integers_exact():
    a = torch.arange(12).reshape(3, 4)
    b = torch.arange(8).reshape(4, 2) - 3
    c = matmul(a, b)
    assert c.dtype == torch.int64
    core.test_eq(c, a @ b)

def test_matmul_mixed_dtypes_promote():
    a, b = torch.arange(6).reshape(2, 3), torch.full((3, 2), 0.5)
    c = matmul(a, b)
    assert c.dtype == torch.float32
    core.test_near(c, a.float() @ b)

def test_matmul_does_not_modify_inputs():
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    a0, b0 = a.clone(), b.clone()
    matmul(a, b)
    assert torch.equal(a, a0) and torch.equal(b, b0)

@pytest.mark.parametrize('n,k,m', [(0, 3, 4), (3, 0, 4), (3, 4, 0)])
def test_matmul_empty(n, k, m):
    a, b = torch.randn(n, k), torch.randn(k, m)
    core.test_eq(matmul(a, b), a @ b)

@pytest.mark.parametrize('sa,sb', [((2, 3), (4, 5)), ((3, 2), (3, 2)), ((1, 5), (1, 5)), ((5, 1), (5, 1))])
def test_matmul_incompatible_shapes(sa, sb):
    with pytest.raises(ValueError) as e: matmul(torch.ones(sa), torch.ones(sb))
    msg = str(e.value)
    assert f'cannot multiply {sa[0]}x{sa[1]} by {sb[0]}x{sb[1]}' in msg
    assert f"a's columns ({sa[1]}) must equal b's rows ({sb[0]})" in msg

@pytest.mark.parametrize('sa,sb', [((3,), (3, 2)), ((2, 3), (3,)), ((2, 2, 3), (3, 2)), ((), (1, 1)), ((2, 3), (1, 3, 2))])
def test_matmul_needs_2d(sa, sb):
    with pytest.raises(ValueError, match='expected two 2-d tensors') as e:
        matmul(torch.ones(sa), torch.ones(sb))
    assert f'{tuple(sa)} and {tuple(sb)}' in str(e.value)

@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
def test_matmul_cuda():
    a, b = torch.randn(8, 16, device='cuda'), torch.randn(16, 4, device='cuda')
    c = matmul(a, b)
    assert c.device == a.device
    core.test_near(c, a @ b)
