"""Notebook 13a's attention against PyTorch's own (F.scaled_dot_product_attention, nn.MultiheadAttention,
nn.TransformerEncoderLayer and nn.TransformerDecoderLayer with copied weights), the causal property, the key/value
cache, the encoder-decoder and the classifier on padded input, and the errors bad input gets."""
import math
import pytest, torch
from torch import nn
import torch.nn.functional as F
from mylib.core import set_seed
from mylib.attention import (scaled_dot_product_attention, causal_mask, MultiHeadAttention, SinusoidalPositions,
                             LearnedPositions, TransformerBlock, GPT, gpt_generate, DecoderBlock, TransformerEncoder, GPTClassifier)
from mylib.seq2seq import TransformerSeq2Seq

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

def test_cross_attention_matches_nn_multihead_attention_with_key_padding():
    set_seed(5)
    d, h = 12, 3
    ours, ref = MultiHeadAttention(d, h), nn.MultiheadAttention(d, h, batch_first=True)
    _copy_mha(ours, ref)
    x, mem = torch.randn(3, 4, d, requires_grad=True), torch.randn(3, 7, d, requires_grad=True)
    real = torch.arange(7)[None] < torch.tensor([7, 2, 5])[:, None]
    a = ours(x, real[:, None, None, :], mem=mem)
    b = ref(x, mem, mem, key_padding_mask=~real, need_weights=False)[0]
    assert torch.allclose(a, b, atol=1e-6)
    ga, gb = torch.autograd.grad(a.pow(2).sum(), (x, mem)), torch.autograd.grad(b.pow(2).sum(), (x, mem))
    assert all(torch.allclose(p, r, atol=1e-5) for p, r in zip(ga, gb))
    assert ga[1][1, 2:].abs().max() == 0  # padded keys get no gradient
    with pytest.raises(ValueError, match='not both'): ours(x, mem=mem, cache={})

def test_decoder_block_matches_transformer_decoder_layer():
    set_seed(6)
    d, h = 16, 4
    blk = DecoderBlock(d, h)
    ref = nn.TransformerDecoderLayer(d, h, dim_feedforward=4 * d, dropout=0., activation='gelu', batch_first=True, norm_first=True)
    _copy_mha(blk.self_attn, ref.self_attn); _copy_mha(blk.cross_attn, ref.multihead_attn)
    with torch.no_grad():
        for a, b in ((blk.mlp[0], ref.linear1), (blk.mlp[2], ref.linear2), (blk.ln1, ref.norm1), (blk.ln2, ref.norm2), (blk.ln3, ref.norm3)):
            a.weight.copy_(b.weight); a.bias.copy_(b.bias)
    x, mem = torch.randn(2, 5, d, requires_grad=True), torch.randn(2, 6, d, requires_grad=True)
    real = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    a = blk(x, mem, causal_mask(5), real[:, None, None, :])
    b = ref(x, mem, tgt_mask=~causal_mask(5), memory_key_padding_mask=~real)
    assert torch.allclose(a, b, atol=1e-5)
    ga = torch.autograd.grad(a.pow(2).sum(), [x, mem, blk.cross_attn.qkv.weight])
    gb = torch.autograd.grad(b.pow(2).sum(), [x, mem, ref.multihead_attn.in_proj_weight])
    assert all(torch.allclose(p, r, atol=1e-4) for p, r in zip(ga, gb))

def test_transformer_seq2seq_forced_equals_greedy_and_ignores_padding():
    set_seed(7)
    model = TransformerSeq2Seq(20, 12, d=16, n_heads=2, n_enc=1, n_dec=2, max_len=16, out_len=6, bos_idx=0, pad_idx=0).eval()
    src = torch.randint(1, 20, (3, 9)); src[1, 4:] = 0; src[2, 7:] = 0
    with torch.no_grad():
        out = model(src)
        assert out.shape == (3, 6, 12)
        assert torch.allclose(model((src, out.argmax(-1))), out, atol=1e-5)  # causal: all at once = step by step
        assert torch.allclose(model(src[1:2, :4])[0], out[1], atol=1e-5)  # padding never read
        tgt = torch.randint(0, 12, (3, 6)); tgt2 = tgt.clone(); tgt2[:, 3] = (tgt2[:, 3] + 1) % 12
        a, b = model((src, tgt)), model((src, tgt2))  # target t is read only by positions after t
        assert torch.equal(a[:, :4], b[:, :4]) and not torch.equal(a[:, 4:], b[:, 4:])
    with pytest.raises(ValueError, match='no tokens'): model(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match='max_len'): model(torch.ones(1, 17, dtype=torch.long))

def test_gpt_classifier_pools_real_tokens_only():
    set_seed(8)
    gpt = GPT(30, d=16, n_heads=2, n_layers=2, max_len=20, p=0.)
    clas = GPTClassifier(gpt, 3, pad_idx=1).eval()
    x = torch.randint(2, 30, (4, 10)); x[1, 6:] = 1; x[3, 2:] = 1
    with torch.no_grad():
        out = clas(x)
        assert out.shape == (4, 3)
        assert torch.allclose(clas(x[1:2, :6])[0], out[1], atol=1e-5) and torch.allclose(clas(x[3:4, :2])[0], out[3], atol=1e-5)
    assert clas.gpt.head.weight is clas.gpt.emb.weight
    with pytest.raises(ValueError, match='pad at the end'): clas(torch.cat([torch.ones(4, 1, dtype=torch.long), x], 1))
