"""Spiking conv/pool HM2-BP (docs/algorithm.md, "Convolution and pooling"): the conv-form backward equals the rule pair by pair.

The reference evaluates the spec's definitions over explicit (output position, input pixel)
pairs, with the S-PSP of each pair taken from ``hm2bp.functional.spsp`` on the flattened pixel
trains (float64). The fast path never forms that pair tensor.
"""
from __future__ import annotations

import random

import pytest
import torch

import hm2bp
import hm2bp.layers.conv as conv_layer
from hm2bp.functional import (
    HM2BPRule,
    LIFParams,
    LinearForward,
    PSPKernel,
    hm2bp_backward,
    lif_simulate,
)
from hm2bp.functional.conv import conv_hm2bp_backward, pool_hm2bp_backward
from hm2bp.network import LayerSpec, build_from_spec
from tests.helpers.conv_reference import conv_reference, pool_reference, random_conv_case
from tests.helpers.spike_trains import random_trains


@pytest.mark.parametrize("convention", ["exact", "official"])
@pytest.mark.parametrize(
    "geometry",
    [dict(stride=1, padding=0), dict(stride=2, padding=1), dict(stride=1, padding=1, k=2, hw=(4, 4))],
    ids=["valid", "stride2-pad1", "k2-pad1"],
)
def test_conv_backward_equals_pairwise_rule(convention, geometry):
    geometry = dict(geometry)
    k, hw = geometry.pop("k", 3), geometry.pop("hw", (6, 5))
    for seed in range(2):
        pre, post, w, grad = random_conv_case(seed, T=70 if seed == 0 else 300, k=k, hw=hw, **geometry)  # 300 > 4 tau_m
        for opts in (dict(), dict(effect_ratio=False, side_effect=False), dict(reg_lambda=10.0, reg_beta=0.4)):
            neuron, rule = LIFParams(3.0, psp=convention), HM2BPRule(**opts)
            gw, gin, _ = conv_hm2bp_backward(pre, post, w, grad, neuron, rule, **geometry, time_chunk=16)
            rw, rin, _ = conv_reference(pre, post, w, grad, neuron, rule, convention, **geometry)
            torch.testing.assert_close(gw, rw, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(gin, rin, rtol=1e-10, atol=1e-10)


def test_conv_bias_gradient_equals_pairwise_rule():
    pre, post, w, grad = random_conv_case(7)
    bias = torch.tensor([0.3, -0.7], dtype=torch.float64)
    neuron, rule = LIFParams(2.0, psp="official"), HM2BPRule()
    gw, gin, gb = conv_hm2bp_backward(pre, post, w, grad, neuron, rule, bias=bias)
    rw, rin, rb = conv_reference(pre, post, w, grad, neuron, rule, "official", 1, 0, bias=bias)
    torch.testing.assert_close(gw, rw, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gin, rin, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gb, rb, rtol=1e-10, atol=1e-10)


def test_conv_equals_fc_rule_on_unrolled_kernel():
    """A conv layer is an FC layer with a Toeplitz weight: same per-pair rule, summed over shared taps."""
    pre, post, w, grad = random_conv_case(3, stride=2, padding=1)
    T, B, c_in, H, W = pre.shape
    n_in = c_in * H * W
    eye = torch.eye(n_in, dtype=torch.float64).view(n_in, c_in, H, W)
    dense = torch.nn.functional.conv2d(eye, w, stride=2, padding=1).reshape(n_in, -1).t()  # [N_out, N_in]
    neuron, rule = LIFParams(3.0, psp="official"), HM2BPRule()
    fc_forward = LinearForward(pre.reshape(T, B, -1), post.reshape(T, B, -1))
    gw_fc, gin_fc, _ = hm2bp_backward(fc_forward, dense, grad.reshape(B, -1), neuron, rule)
    gw, gin, _ = conv_hm2bp_backward(pre, post, w, grad, neuron, rule, stride=2, padding=1)
    torch.testing.assert_close(gin.reshape(B, -1), gin_fc, rtol=1e-10, atol=1e-10)
    # fold the dense gradient back onto the taps: d(dense)/d(w) is the same conv of the identity
    w_var = w.clone().requires_grad_(True)
    dense_of_w = torch.nn.functional.conv2d(eye, w_var, stride=2, padding=1).reshape(n_in, -1).t()
    (folded,) = torch.autograd.grad(dense_of_w, w_var, grad_outputs=gw_fc)
    torch.testing.assert_close(gw, folded, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("convention", ["exact", "official"])
@pytest.mark.parametrize("hw,p", [((6, 6), 2), ((7, 5), 2), ((6, 7), 3)])
def test_pool_backward_equals_pairwise_rule(convention, hw, p):
    rng = random.Random(11)
    T, B, C = 80, 2, 2
    pre = random_trains(rng, T, (B, C, *hw), silent_every=4, rate=(0.05, 0.2))
    post = random_trains(rng, T, (B, C, hw[0] // p, hw[1] // p), silent_every=3)
    grad = torch.randn(B, C, hw[0] // p, hw[1] // p, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kernel = PSPKernel.make(convention)
    for divisor, ratio in ((p * p, True), (2.0, True), (p * p, False)):
        got = pool_hm2bp_backward(pre, post, grad, p, kernel, divisor=divisor, effect_ratio=ratio, time_chunk=16)
        ref = pool_reference(pre, post, grad, p, divisor, convention, ratio)
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- modules
def test_conv_forward_is_lif_of_delayed_cross_correlation():
    torch.manual_seed(0)
    layer = hm2bp.SpikingConv2d(2, 3, 3, 1.5, stride=2, padding=1, init_range=1.0).double()
    x = (torch.rand(40, 2, 2, 7, 6) < 0.3).to(torch.uint8)
    out = layer(x)
    assert out.shape == (40, 2, 3, 4, 3) and out.dtype == torch.float64
    w = layer.weight.detach()
    cur = torch.zeros(40, 2, 3, 4, 3, dtype=torch.float64)
    xp = torch.nn.functional.pad(x.double(), (1, 1, 1, 1))
    for t in range(1, 40):
        for y in range(4):
            for xx in range(3):
                patch = xp[t - 1, :, :, 2 * y:2 * y + 3, 2 * xx:2 * xx + 3]  # [B, C_in, 3, 3], no flip
                cur[t, :, :, y, xx] = torch.einsum("bcij,ocij->bo", patch, w)
    ref = lif_simulate(cur, LIFParams(1.5, threshold_eps=0.0))
    assert torch.equal(out.bool(), ref)
    assert out.sum() > 0


def test_pool_forward_sums_windows():
    torch.manual_seed(1)
    x = (torch.rand(50, 2, 3, 5, 4) < 0.4).double()
    out = hm2bp.SpikingPool2d(2, 1.0)(x)
    assert out.shape == (50, 2, 3, 2, 2) and out.dtype == torch.float64
    cur = torch.zeros(50, 2, 3, 2, 2, dtype=torch.float64)
    cur[1:] = x[:-1, :, :, :4, :4].reshape(49, 2, 3, 2, 2, 2, 2).sum((4, 6))
    assert torch.equal(out.bool(), lif_simulate(cur, LIFParams(1.0, threshold_eps=1e-6)))


def test_modules_backward_use_count_semantics():
    """Autograd delivers dE/do broadcast over time and returns dE/do_in broadcast over time."""
    torch.manual_seed(2)
    conv = hm2bp.SpikingConv2d(1, 2, 3, LIFParams(1.0, threshold_eps=0.0, psp="official"), init_range=1.0).double()
    pool = hm2bp.SpikingPool2d(2, LIFParams(1.0, psp="official"))
    x = (torch.rand(60, 2, 1, 8, 8) < 0.3).double().requires_grad_(True)
    h = conv(x)
    h.retain_grad()
    out = pool(h)
    g = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    (out.sum(0) * g).sum().backward()
    ref_h = pool_hm2bp_backward(h.detach(), out.detach(), g, 2, pool.psp_kernel, divisor=4.0)
    torch.testing.assert_close(h.grad, ref_h.expand(60, *ref_h.shape))
    gw, gin, _ = conv_hm2bp_backward(x.detach(), h.detach(), conv.weight.detach(), ref_h, conv.neuron, conv.rule)
    torch.testing.assert_close(conv.weight.grad, gw)
    torch.testing.assert_close(x.grad, gin.expand(60, *gin.shape))


@pytest.mark.parametrize("density", [0.3, 0.03], ids=["dense", "events"])
def test_first_layer_input_gets_no_gradient(monkeypatch, density):
    """Data spikes (a first layer's input) carry no counts: the backward neither computes nor returns an
    input gradient, and the kernels still get theirs. The same spikes as a differentiable float train
    (a hidden layer's input) do get one, so the spy would see a first layer that computed it."""
    seen = []

    def spy(fn):
        def wrapped(*args, **kwargs):
            gw, gin, gb = fn(*args, **kwargs)
            seen.append((fn.__name__, kwargs["need_input_grad"], gin))
            return gw, gin, gb
        return wrapped

    for name in ("conv_hm2bp_backward", "conv_hm2bp_backward_events"):
        monkeypatch.setattr(conv_layer, name, spy(getattr(conv_layer, name)))
    path = "conv_hm2bp_backward" if density > 0.1 else "conv_hm2bp_backward_events"
    torch.manual_seed(0)
    conv = hm2bp.SpikingConv2d(1, 2, 3, 1.0)
    x = (torch.rand(20, 1, 1, 6, 6) < density).to(torch.uint8)
    conv(x).sum().backward()
    ((called, need_in, gin),) = seen
    assert called == path
    assert not need_in and gin is None, "the first layer computed a gradient for its input spikes"
    assert conv.weight.grad is not None and conv.weight.grad.shape == (2, 1, 3, 3)
    assert conv.weight.grad.abs().sum() > 0

    seen.clear()
    hidden = x.float().requires_grad_()
    conv(hidden).sum().backward()
    ((called, need_in, gin),) = seen
    assert called == path and need_in and gin is not None
    assert hidden.grad is not None and hidden.grad.shape == x.shape


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="threshold"):
        hm2bp.SpikingPool2d(2)
    with pytest.raises(ValueError, match="pool_rule"):
        hm2bp.SpikingPool2d(2, 1.0, pool_rule="nope")
    with pytest.raises(ValueError, match=r"\[T, B, 3, H, W\]"):
        hm2bp.SpikingConv2d(3, 4, 5, 1.0)(torch.zeros(5, 1, 2, 8, 8))
    with pytest.raises(ValueError, match="smaller"):
        hm2bp.SpikingConv2d(1, 4, 5, 1.0)(torch.zeros(5, 1, 1, 4, 4))


def test_build_from_spec_and_network_shapes():
    rule = HM2BPRule(effect_ratio=True, side_effect=True, reg_lambda=10.0, reg_beta=0.4, reg_limit=8.0)
    conv, shape = build_from_spec(LayerSpec("conv", 15, 5), (28, 28), LIFParams.official(5.0, conv=True), rule, 0.5,
                                  "official")
    assert isinstance(conv, hm2bp.SpikingConv2d) and shape == (15, 24, 24)
    assert conv.rule.reg_beta == 0.4 and conv.threshold_eps == 0.0 and conv.weight.abs().max() <= 0.5
    pool, shape = build_from_spec(LayerSpec("pool", 2), shape, LIFParams.official(2.0), rule, 0.5, "threshold")
    assert isinstance(pool, hm2bp.SpikingPool2d) and shape == (15, 12, 12) and pool.backward_divisor == 2.0
    with pytest.raises(ValueError, match="image input"):
        build_from_spec(LayerSpec("conv", 4, 3), (100,), LIFParams.official(1.0), rule, 0.5, "official")
    net = hm2bp.SpikingNetwork("28x28-15C5-P2-40C5-P2-300-10", [5, 2, 12, 4, 10, 10])
    assert sum(p.numel() for p in net.parameters()) == 210_375  # the paper CNN's parameter count
    x = torch.zeros(12, 2, 28, 28, dtype=torch.uint8)
    x[1::3, :, 10:18, 10:18] = 1
    outs = net(x, return_all=True)
    assert [tuple(v.shape[2:]) for v in outs.values()] == [(15, 24, 24), (15, 12, 12), (40, 8, 8), (40, 4, 4), (300,), (10,)]
