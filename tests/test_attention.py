"""Notebook 13a's attention against PyTorch's own (F.scaled_dot_product_attention, nn.MultiheadAttention,
nn.TransformerEncoderLayer with copied weights), the causal property, the key/value cache, and the errors bad input gets."""
import math
import pytest, torch
from torch import nn
import torch.nn.functional as F
from mylib.core import set_seed
from mylib.attention import (scaled_dot_product_attention, causal_mask, MultiHeadAttention, SinusoidalPositions,
                             LearnedPositions, TransformerBlock, GPT, gpt_generate)

@pytest.mark.parametrize('shape', [(2, 5, 8), (2, 3, 6, 4)])
def test_sdpa_matches_pytorch_with_random_masks(shape):
    set_seed(0)
    q, k, v = [torch.randn(*shape, requires_grad=True) for _ in range(3)]
    n = shape[-2]
    mask = torch.rand(n, n) < 0.6
    mask |= torch.eye(n, dtype=torch.bool)  # every query sees at least itself: no row of only -inf
    for m in (None, mask, causal_mask(n)):
        a, b = scaled_dot_product_attention(q, k, v, m), F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        assert torch.allclose(a, b, atol=1e-6)
        ga, gb = torch.autograd.grad(a.sum(), (q, k, v)), torch.autograd.grad(b.sum(), (q, k, v))
        assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(ga, gb))

def _copy_mha(ours, ref):
    with torch.no_grad():
        ours.qkv.weight.copy_(ref.in_proj_weight); ours.qkv.bias.copy_(ref.in_proj_bias)
        ours.out.weight.copy_(ref.out_proj.weight); ours.out.bias.copy_(ref.out_proj.bias)

@pytest.mark.parametrize('d,h', [(12, 3), (8, 1), (16, 8)])
def test_multi_head_attention_matches_nn_multihead_attention(d, h):
    set_seed(1)
    ours, ref = MultiHeadAttention(d, h), nn.MultiheadAttention(d, h, batch_first=True)
    _copy_mha(ours, ref)
    x = torch.randn(2, 6, d, requires_grad=True)
    for m in (None, causal_mask(6)):
        a = ours(x, m)
        b = ref(x, x, x, attn_mask=None if m is None else ~m, need_weights=False)[0]
        assert torch.allclose(a, b, atol=1e-6)
        assert torch.allclose(torch.autograd.grad(a.sum(), x)[0], torch.autograd.grad(b.sum(), x)[0], atol=1e-5)

def test_pre_norm_block_matches_transformer_encoder_layer():
    set_seed(2)
    d, h = 16, 4
    blk = TransformerBlock(d, h)
    ref = nn.TransformerEncoderLayer(d, h, dim_feedforward=4 * d, dropout=0., activation='gelu', batch_first=True, norm_first=True)
    _copy_mha(blk.attn, ref.self_attn)
    with torch.no_grad():
        for a, b in ((blk.mlp[0], ref.linear1), (blk.mlp[2], ref.linear2), (blk.ln1, ref.norm1), (blk.ln2, ref.norm2)):
            a.weight.copy_(b.weight); a.bias.copy_(b.bias)
    x = torch.randn(3, 9, d, requires_grad=True)
    a, b = blk(x, causal_mask(9)), ref(x, src_mask=~causal_mask(9))
    assert torch.allclose(a, b, atol=1e-5)
    ga = torch.autograd.grad(a.pow(2).sum(), [x, blk.mlp[2].weight])
    gb = torch.autograd.grad(b.pow(2).sum(), [x, ref.linear2.weight])
    assert all(torch.allclose(p, r, atol=1e-4) for p, r in zip(ga, gb))

@pytest.mark.parametrize('positions', ['learned', 'sinusoidal'])
def test_a_later_token_never_changes_an_earlier_output(positions):
    set_seed(3)
    gpt = GPT(50, d=16, n_heads=2, n_layers=2, max_len=32, p=0., positions=positions).eval()
    x = torch.randint(0, 50, (3, 16))
    for t in (0, 7, 15):
        y = x.clone(); y[:, t] = (y[:, t] + 1) % 50
        with torch.no_grad(): a, b = gpt(x), gpt(y)
        assert torch.equal(a[:, :t], b[:, :t]) and not torch.equal(a[:, t:], b[:, t:])

def test_kv_cache_gives_what_recomputing_gives():
    set_seed(4)
    gpt = GPT(40, d=16, n_heads=4, n_layers=3, max_len=40).eval()
    prompt = torch.randint(0, 40, (4,))
    assert torch.equal(gpt_generate(gpt, prompt, 25), gpt_generate(gpt, prompt, 25, use_cache=False))
    seq = gpt_generate(gpt, prompt, 25)
    caches = [{} for _ in gpt.blocks]
    with torch.no_grad():  # a prompt in one call, then token by token
        parts = [gpt(seq[:4][None], caches)[0]] + [gpt(seq[i:i + 1][None], caches)[0] for i in range(4, len(seq))]
        assert torch.allclose(torch.cat(parts), gpt(seq[None])[0], atol=1e-5)

def test_sinusoidal_positions_by_hand():
    pe = SinusoidalPositions(10, 4)(10)
    p, i = 7, 1
    assert math.isclose(pe[p, 2 * i].item(), math.sin(p / 10000 ** (2 * i / 4)), abs_tol=1e-6)
    assert math.isclose(pe[p, 2 * i + 1].item(), math.cos(p / 10000 ** (2 * i / 4)), abs_tol=1e-6)

def test_bad_input_gets_a_clear_error():
    q = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match='does not broadcast'): scaled_dot_product_attention(q, q, q, torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match='boolean'): scaled_dot_product_attention(q, q, q, torch.ones(5, 5))
    with pytest.raises(ValueError, match='do not fit'): scaled_dot_product_attention(q, torch.randn(2, 5, 7), q)
    with pytest.raises(ValueError, match='do not divide'): MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match='max_len'): GPT(10, d=8, n_heads=2, max_len=8)(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match='max_len'): LearnedPositions(8, 4)(3, offset=6)
    with pytest.raises(ValueError, match='even'): SinusoidalPositions(8, 5)
    with pytest.raises(ValueError, match="'learned' or 'sinusoidal'"): GPT(10, positions='rotary')
    gpt = GPT(10, d=8, n_heads=2, max_len=8)
    with pytest.raises(ValueError, match='max_len'): gpt_generate(gpt, torch.zeros(4, dtype=torch.long), 6)
    with pytest.raises(ValueError, match='1-d'): gpt_generate(gpt, torch.zeros(1, 4, dtype=torch.long), 2)
