"""Event-driven conv/pool (forward current and HM2-BP backward) against the dense and pairwise
references of ``test_conv.py`` (float64): every geometry the configs and tests use, every block
size, silent layers, bias, the rule switches."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from hm2bp.functional import HM2BPRule, LIFParams, PSPKernel
from hm2bp.functional.conv import pool_hm2bp_backward
from hm2bp.functional.conv_events import (
    ConvGeometry,
    conv_current_events,
    line_entries,
    line_stamps,
    pool_current_events,
    split_events,
)
from hm2bp.functional.conv_grad import (
    channels_last_index,
    choose_path,
    conv_hm2bp_backward_events,
    counts_from_index,
    input_events,
    pool_hm2bp_backward_events,
)
from hm2bp.functional.current import spike_index
from tests.helpers.conv_reference import conv_reference, pool_reference, random_conv_case
from tests.helpers.spike_trains import random_trains

GEOMETRIES = [
    dict(stride=1, padding=0),
    dict(stride=2, padding=1),
    dict(stride=1, padding=1, k=2, hw=(4, 4)),
    dict(stride=2, padding=0, k=3, hw=(7, 6)),
    dict(stride=3, padding=2, k=4, hw=(8, 7)),
]
GEOMETRY_IDS = ["valid", "stride2-pad1", "k2-pad1", "stride2-odd", "stride3-pad2"]


def _geom(pre, w, stride, padding):
    return ConvGeometry(pre.shape[2], pre.shape[3], pre.shape[4], w.shape[0], w.shape[-1], stride, padding)


def _events_backward(pre, post, w, grad, neuron, rule, geom, **kw):
    T, B = pre.shape[:2]
    ev = input_events(spike_index(pre), T, B, pre[0, 0].numel())
    o_in = counts_from_index(spike_index(pre), B, pre[0, 0].numel(), torch.float64).view(pre.shape[1:])
    return conv_hm2bp_backward_events(ev, spike_index(post), geom, w, grad, neuron, rule, o_in=o_in, o_out=post.sum(0),
                                      pre=pre, **kw)


# ----------------------------------------------------------------------------- forward currents
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=GEOMETRY_IDS)
@pytest.mark.parametrize("density", [0.0, 0.05, 0.4, 1.0])
def test_conv_current_equals_conv2d(geometry, density):
    geometry = dict(geometry)
    k, hw = geometry.pop("k", 3), geometry.pop("hw", (6, 5))
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(7, 3, *hw, generator=g) < density).to(torch.uint8)  # 7 frames, 3 channels
    w = torch.randn(4, 3, k, k, generator=g, dtype=torch.float64)
    geom = ConvGeometry(3, hw[0], hw[1], 4, k, **geometry)
    got = conv_current_events(spike_index(x), 7, w, geom).permute(0, 3, 1, 2)
    ref = F.conv2d(x.double(), w, **geometry)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_line_entries_are_sorted_and_stamps_hold_the_kernel():
    geom = ConvGeometry(2, 5, 6, 3, 3, 1, 1)
    w = torch.arange(54, dtype=torch.float64).view(3, 2, 3, 3)
    stamps = line_stamps(w, geom).view(2, 3, 6, geom.w_out, 3)  # [c_i, k_y, i_x, x, c_o]
    assert stamps[1, 2, 4, 4, 0] == w[0, 1, 2, 1]  # i_x + p - x = 4 + 1 - 4 = 1
    assert stamps[1, 2, 4, 0, 0] == 0  # tap 5 is outside the kernel
    x = (torch.rand(4, 2, 5, 6, generator=torch.Generator().manual_seed(0)) < 0.3).to(torch.uint8)
    entries = line_entries(*split_events(spike_index(x), geom.in_frame, 5, 6), geom)
    assert bool((entries.line[1:] >= entries.line[:-1]).all())


@pytest.mark.parametrize("hw,p", [((6, 6), 2), ((7, 5), 2), ((6, 7), 3)])
def test_pool_current_counts_windows(hw, p):
    x = (torch.rand(9, 2, *hw, generator=torch.Generator().manual_seed(2)) < 0.4).to(torch.uint8)
    got = pool_current_events(spike_index(x), 9, 2, hw[0], hw[1], p, torch.float64)
    ref = F.avg_pool2d(x.double(), p, stride=p, divisor_override=1)
    assert torch.equal(got, ref)


def test_channels_last_index_renumbers():
    x = (torch.rand(5, 2, 3, 4, 6, generator=torch.Generator().manual_seed(1)) < 0.3)
    got = channels_last_index(spike_index(x), 5, 2, 3, 4, 6)
    ref = spike_index(x.permute(0, 1, 3, 4, 2).contiguous())
    assert torch.equal(torch.sort(got).values, ref)
    t = torch.div(got, 2 * 3 * 4 * 6, rounding_mode="floor")
    assert bool((t[1:] >= t[:-1]).all())  # still time-major


# ----------------------------------------------------------------------------- conv backward
@pytest.mark.parametrize("path", ["output", "input", "gemm"])
@pytest.mark.parametrize("convention", ["exact", "official"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=GEOMETRY_IDS)
def test_conv_events_backward_equals_pairwise_rule(convention, geometry, path):
    geometry = dict(geometry)
    k, hw = geometry.pop("k", 3), geometry.pop("hw", (6, 5))
    for seed in range(2):
        pre, post, w, grad = random_conv_case(seed, T=70 if seed == 0 else 300, B=3, k=k, hw=hw, **geometry)  # 300 > 4 tau_m
        geom = _geom(pre, w, **geometry)
        for opts in (dict(), dict(effect_ratio=False, side_effect=False), dict(reg_lambda=10.0, reg_beta=0.4)):
            neuron, rule = LIFParams(3.0, psp=convention), HM2BPRule(**opts)
            rw, rin, _ = conv_reference(pre, post, w, grad, neuron, rule, convention, **geometry)
            for group in (1, 2, 3):
                gw, gin, _ = _events_backward(pre, post, w, grad, neuron, rule, geom, group=group, path=path)
                torch.testing.assert_close(gw, rw, rtol=1e-10, atol=1e-10)
                torch.testing.assert_close(gin, rin, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("path", ["output", "input", "gemm"])
@pytest.mark.parametrize("convention", ["exact", "official"])
@pytest.mark.parametrize("group", [1, 2, None])
def test_conv_events_bias_gradient_equals_pairwise_rule(group, convention, path):
    pre, post, w, grad = random_conv_case(7, T=300, B=3)
    bias = torch.tensor([0.3, -0.7], dtype=torch.float64)
    for side_effect in (True, False):
        neuron, rule = LIFParams(2.0, psp=convention), HM2BPRule(side_effect=side_effect)
        gw, gin, gb = _events_backward(pre, post, w, grad, neuron, rule, _geom(pre, w, 1, 0), bias=bias, group=group,
                                       path=path)
        rw, rin, rb = conv_reference(pre, post, w, grad, neuron, rule, convention, 1, 0, bias=bias)
        torch.testing.assert_close(gw, rw, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(gin, rin, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(gb, rb, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("path", ["output", "input", "gemm"])
@pytest.mark.parametrize("silent", ["post", "pre", "both"])
def test_conv_events_backward_silent_layers(silent, path):
    pre, post, w, grad = random_conv_case(5, B=2, stride=2, padding=1)
    if silent in ("post", "both"):
        post = torch.zeros_like(post)
    if silent in ("pre", "both"):
        pre = torch.zeros_like(pre)
    neuron, rule = LIFParams(3.0, psp="official"), HM2BPRule(reg_lambda=1.0, reg_beta=0.1)
    rw, rin, _ = conv_reference(pre, post, w, grad, neuron, rule, "official", 2, 1)
    gw, gin, _ = _events_backward(pre, post, w, grad, neuron, rule, _geom(pre, w, 2, 1), group=1, path=path)
    torch.testing.assert_close(gw, rw, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gin, rin, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("path", ["output", "input", "gemm", "auto"])
def test_conv_events_backward_without_input_grad(path):
    pre, post, w, grad = random_conv_case(2, B=2)
    neuron, rule = LIFParams(3.0, psp="official"), HM2BPRule()
    gw, gin, _ = _events_backward(pre, post, w, grad, neuron, rule, _geom(pre, w, 1, 0), need_input_grad=False, path=path)
    rw, _, _ = conv_reference(pre, post, w, grad, neuron, rule, "official", 1, 0)
    assert gin is None
    torch.testing.assert_close(gw, rw, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- pool backward
@pytest.mark.parametrize("convention", ["exact", "official"])
@pytest.mark.parametrize("hw,p", [((6, 6), 2), ((7, 5), 2), ((6, 7), 3)])
def test_pool_events_backward_equals_pairwise_rule(convention, hw, p):
    rng = random.Random(11)
    T, B, C = 300, 3, 2
    pre = random_trains(rng, T, (B, C, *hw), silent_every=4, rate=(0.05, 0.2))
    post = random_trains(rng, T, (B, C, hw[0] // p, hw[1] // p), silent_every=3)
    grad = torch.randn(B, C, hw[0] // p, hw[1] // p, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kernel = PSPKernel.make(convention)
    ev = input_events(spike_index(pre), T, B, pre[0, 0].numel())
    for divisor, ratio in ((p * p, True), (2.0, True), (p * p, False)):
        ref = pool_reference(pre, post, grad, p, divisor, convention, ratio)
        for group in (1, 2, None):
            got = pool_hm2bp_backward_events(ev, spike_index(post), C, hw, grad, p, kernel, divisor=divisor,
                                             o_in=pre.sum(0), o_out=post.sum(0), effect_ratio=ratio, group=group)
            torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
        dense = pool_hm2bp_backward(pre, post, grad, p, kernel, divisor=divisor, effect_ratio=ratio)
        torch.testing.assert_close(got, dense, rtol=1e-10, atol=1e-10)


def test_pool_events_backward_silent():
    T, B, C = 50, 2, 1
    pre = torch.zeros(T, B, C, 4, 4, dtype=torch.float64)
    post = torch.zeros(T, B, C, 2, 2, dtype=torch.float64)
    grad = torch.ones(B, C, 2, 2, dtype=torch.float64)
    ev = input_events(spike_index(pre), T, B, 16)
    got = pool_hm2bp_backward_events(ev, spike_index(post), C, (4, 4), grad, 2, PSPKernel.make("official"),
                                     divisor=4.0, o_in=pre.sum(0), o_out=post.sum(0))
    assert torch.equal(got, torch.full((B, C, 4, 4), 0.25, dtype=torch.float64))


# ----------------------------------------------------------------------------- layers: sparse vs dense
@pytest.mark.parametrize("spec,thresholds", [("12x12-4C3-P2-3C3-20-10", [0.6, 0.5, 0.8, 1.0, 1.0]),
                                              ("13x11-3C4-P3-20-10", [0.6, 0.5, 1.0, 1.0])])
def test_network_event_path_equals_dense_path(monkeypatch, spec, thresholds):
    """The same CNN with the event-driven layers and with the dense conv-form fallback (forced by a
    density threshold of 0): identical spikes, gradients equal to 1e-10 (float64)."""
    import hm2bp
    import hm2bp.functional.forward as forward

    torch.manual_seed(0)
    net = hm2bp.SpikingNetwork(spec, thresholds, output_lateral_inhibition=1.0, spsp="official", target_injection=8,
                               conv_init=1.0).double()
    h, w = (int(v) for v in spec.split("-")[0].split("x"))
    x = (torch.rand(90, 3, h, w, generator=torch.Generator().manual_seed(1)) < 0.06).to(torch.uint8)
    y = torch.tensor([1, 4, 7])

    def run():
        net.zero_grad(set_to_none=True)
        outs = net(x, target=y, return_all=True)
        hm2bp.SpikeCountLoss(8, 2, 2)(outs["output"].sum(0), y).backward()
        return {k: v.detach().bool() for k, v in outs.items()}, {k: p.grad.clone() for k, p in net.named_parameters()}

    spikes, grads = run()
    assert all(int(s.sum()) > 0 for k, s in spikes.items() if k != "output")
    monkeypatch.setattr(forward, "MAX_CONV_DENSITY", -1.0)  # every conv/pool layer takes the dense path
    dense_spikes, dense_grads = run()
    for k in spikes:
        assert torch.equal(spikes[k], dense_spikes[k]), k
    for k in grads:
        torch.testing.assert_close(grads[k], dense_grads[k], rtol=1e-10, atol=1e-10)


def test_choose_path_follows_the_work_of_each_path():
    """The paper CNN's conv2 (15x12x12 -> 40x8x8, k 5, T 400, batch 16) at the spike counts of
    docs/benchmarks.md: sparse (initial weights) -> the input path; dense (after 510 training steps)
    -> the GEMM over time, unless the dense trains are not at hand."""
    geom = ConvGeometry(15, 12, 12, 40, 5)
    assert choose_path(30515, 3346, 400, 16, geom, True, True) == "input"
    assert choose_path(183442, 428482, 400, 16, geom, True, True) == "gemm"
    assert choose_path(183442, 428482, 400, 16, geom, True, True, gemm=False) == "output"
    conv1 = ConvGeometry(1, 28, 28, 15, 5)  # few input pixels, small GEMMs: never the GEMM path
    assert choose_path(107343, 563351, 400, 16, conv1, True, False) != "gemm"
