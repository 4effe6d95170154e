"""The blocked HM2-BP backward (both paths) equals the rule written pair by pair on a materialised E."""
from __future__ import annotations

import importlib
import random

import pytest
import torch

from hm2bp.functional import (
    HM2BPRule,
    LIFParams,
    LinearForward,
    PSPKernel,
    hm2bp_backward,
    inject_target,
    regulariser_grad,
    spsp,
)
from tests.helpers.spike_trains import random_post_train


def _random(seed, T=120, B=3, n_in=6, n_out=4):
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    pre = (torch.rand(T, B, n_in, generator=g) < 0.08).double()
    pre[:, 0, 0] = 0  # a silent input
    post = torch.zeros(T, B, n_out, dtype=torch.float64)
    for b in range(B):
        for i in range(n_out):
            if (b + i) % 3 == 0:
                continue  # silent outputs
            for t in random_post_train(rng, T, 0.1):
                post[t, b, i] = 1
    w = torch.randn(n_out, n_in, generator=g, dtype=torch.float64)
    grad = torch.randn(B, n_out, generator=g, dtype=torch.float64) * 5
    target = torch.randint(0, n_out, (B,), generator=g)
    return pre, post, w, grad, target


def reference(pre, post, w, grad, neuron, rule, target, convention):
    B, n_out, n_in = post.shape[1], w.shape[0], w.shape[1]
    nu = neuron.threshold
    o_raw = post.sum(0)
    gamma = torch.ones(B, n_out, dtype=torch.float64)
    if rule.lateral_factor:
        el = spsp(post, post, convention=convention)
        for b in range(B):
            for i in range(n_out):
                d_i = (1 / nu) if (o_raw[b, i] > 0 or i == target[b]) else 0.0
                s = 0.0
                for l in range(n_out):
                    if l == i:
                        continue
                    d_l = (1 / nu) if (o_raw[b, l] > 0 or l == target[b]) else 0.0
                    both = o_raw[b, i] > 0 and o_raw[b, l] > 0
                    r1 = el[b, l, i] / o_raw[b, i] if both else 1.0
                    r2 = el[b, i, l] / o_raw[b, l] if both else 1.0
                    s += d_i * d_l * r1 * r2
                gamma[b, i] = 1 / (1 - rule.lateral_inhibition**2 * s)
    if rule.target_injection:
        post = inject_target(post, o_raw, target, rule.target_injection, 2)
    e = spsp(pre, post, convention=convention)
    o_out, o_in = post.sum(0), pre.sum(0)
    gw = torch.zeros_like(w)
    gin = torch.zeros(B, n_in, dtype=torch.float64)
    for b in range(B):
        for i in range(n_out):
            delta = grad[b, i] / nu
            if o_out[b, i] > 0:
                sigma = sum(w[i, l] * e[b, i, l] / o_out[b, i] for l in range(n_in)) / nu
            else:
                sigma = 0.5 * w[i].sum() / nu
            for j in range(n_in):
                eij = e[b, i, j] if o_out[b, i] > 0 else (0.1 if o_in[b, j] > 0 else 0.0)
                gw[i, j] += delta * eij * (1 + sigma) * gamma[b, i]
                rho = e[b, i, j] / o_in[b, j] if (o_out[b, i] > 0 and o_in[b, j] > 0) else 1.0
                gin[b, j] += delta * w[i, j] * (rho if rule.effect_ratio else 1.0)
    return gw + B * regulariser_grad(w, rule), gin


@pytest.mark.parametrize("convention", ["exact", "official"])
@pytest.mark.parametrize("official_extras", [False, True])
def test_reduced_backward_equals_pairwise_rule(convention, official_extras):
    for seed in range(4):
        pre, post, w, grad, target = _random(seed)
        neuron = LIFParams(3.0, psp=convention)
        rule = HM2BPRule(
            lateral_inhibition=1.0 if official_extras else 0.0,
            lateral_factor=official_extras,
            target_injection=35.0 if official_extras else None,
            reg_lambda=10.0 if official_extras else 0.0,
            reg_beta=0.04 if official_extras else 0.0,
        )
        gw, gin, _ = hm2bp_backward(LinearForward(pre, post, target=target), w, grad, neuron, rule)
        rw, rin = reference(pre, post, w, grad, neuron, rule, target, convention)
        torch.testing.assert_close(gw, rw, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(gin, rin, atol=1e-9, rtol=1e-9)


def test_effect_ratio_off_is_plain_transpose():
    pre, post, w, grad, _ = _random(7)
    neuron, rule = LIFParams(2.0, psp="exact"), HM2BPRule(effect_ratio=False)
    _, gin, _ = hm2bp_backward(LinearForward(pre, post), w, grad, neuron, rule)
    torch.testing.assert_close(gin, (grad / 2.0) @ w)


def test_bias_is_a_synapse_from_an_always_on_input():
    pre, post, w, grad, _ = _random(11)
    bias = torch.randn(w.shape[0], dtype=torch.float64)
    neuron, rule = LIFParams(2.0, psp="exact"), HM2BPRule()
    gw, gin, gb = hm2bp_backward(LinearForward(pre, post), w, grad, neuron, rule, bias=bias)
    T, B = pre.shape[:2]
    ones = torch.ones(T, B, 1, dtype=torch.float64)
    gw2, gin2, _ = hm2bp_backward(LinearForward(torch.cat([pre, ones], -1), post), torch.cat([w, bias[:, None]], 1),
                                  grad, neuron, rule)
    torch.testing.assert_close(gw, gw2[:, :-1])
    torch.testing.assert_close(gb, gw2[:, -1])
    torch.testing.assert_close(gin, gin2[:, :-1])


def test_regulariser_is_gradient_of_h17():
    w = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    lam, beta, L = 10.0, 0.04, 8.0
    s = ((w / L) ** 2).mean(1)
    energy = (lam * L * w.shape[1] / 2 * torch.exp(beta * (s - 1))).sum()
    (auto,) = torch.autograd.grad(energy, w)
    rule = HM2BPRule(reg_lambda=lam, reg_beta=beta, reg_limit=L)
    torch.testing.assert_close(regulariser_grad(w.detach(), rule), auto)


def test_lateral_factor_is_capped_where_the_series_diverges():
    """Strongly coupled, low-threshold outputs: 1 - w0^2 s <= 0 would give inf or a sign flip."""
    from hm2bp.functional import lateral_factor

    T = 60
    post = torch.zeros(T, 1, 3, dtype=torch.float64)
    for i in range(3):
        post[5 + i :: 4, 0, i] = 1  # dense, interleaved trains: large mutual S-PSPs
    counts = post.sum(0)
    strong = HM2BPRule(lateral_inhibition=3.0, lateral_factor=True)
    gamma = lateral_factor(post, counts, torch.tensor([0]), LIFParams(0.5, psp="official"), strong)
    assert torch.isfinite(gamma).all() and (gamma > 0).all() and gamma.max() <= 10.0 + 1e-12
    weak = HM2BPRule(lateral_inhibition=1.0, lateral_factor=True)
    g2 = lateral_factor(post, counts, torch.tensor([0]), LIFParams(50.0, psp="official"), weak)
    assert (g2 > 1.0).all() and (g2 < 1.01).all()  # the usual regime: a small correction above 1


def test_backward_does_not_depend_on_the_sample_block_or_the_event_path(monkeypatch):
    """Blocks of samples, the event-driven (embedding_bag) and dense (bmm) S-PSP products, the
    trace path used without an input error, and counts passed in by the caller all give the same
    gradients."""
    spsp_module = importlib.import_module("hm2bp.functional.spsp")  # the module, not the function

    for seed, convention in ((1, "exact"), (2, "official")):
        pre, post, w, grad, target = _random(seed)
        bias = torch.randn(w.shape[0], dtype=torch.float64)
        neuron = LIFParams(3.0, psp=convention)
        rule = HM2BPRule(target_injection=5.0, lateral_inhibition=0.5, lateral_factor=True, reg_lambda=1.0, reg_beta=0.1)
        B = pre.shape[1]
        ref = hm2bp_backward(LinearForward(pre, post, target=target), w, grad, neuron, rule, bias=bias, group=B)
        fwd = LinearForward(pre, post, target=target)
        others = [hm2bp_backward(fwd, w, grad, neuron, rule, bias=bias, group=g) for g in (1, 2)]
        counted = LinearForward(pre.bool(), post.bool(), target=target, counts_in=pre.sum(0), counts_out=post.sum(0))
        others.append(hm2bp_backward(counted, w, grad, neuron, rule, bias=bias, group=3))
        for g in (1, 2, B):  # no error to the inputs: the trace path (Q against the events, no e_b)
            for path in ("trace", "matrix"):
                gw, gin, gb = hm2bp_backward(fwd, w, grad, neuron, rule, bias=bias, group=g, need_input_grad=False,
                                             path=path)
                assert gin is None
                others.append((gw, ref[1], gb))
        with pytest.raises(ValueError, match="trace"):
            hm2bp_backward(LinearForward(pre, post), w, grad, neuron, rule, path="trace")  # needs need_input_grad=False
        monkeypatch.setattr(spsp_module, "MAX_SPARSE_DENSITY", 0.0)  # force the dense bmm
        monkeypatch.setattr(importlib.import_module("hm2bp.functional.grad"), "MAX_SPARSE_DENSITY", 0.0)
        others.append(hm2bp_backward(LinearForward(pre, post, target=target), w, grad, neuron, rule, bias=bias, group=2))
        monkeypatch.undo()
        for got in others:
            for x, y in zip(ref, got):
                torch.testing.assert_close(x, y, atol=1e-10, rtol=1e-10)


def test_spsp_from_trace_equals_the_materialised_spsp():
    from hm2bp.functional.spsp import adjoint_trace, spsp_from_trace

    pre, post, _, _, _ = _random(4)
    for convention in ("exact", "official", "paper"):
        kernel = PSPKernel.make(convention)
        ref = spsp(pre, post, convention=convention).transpose(1, 2)  # [B, N_in, N_out]
        q = adjoint_trace(post, kernel, torch.float64)
        for density in (1.0, 0.0):  # event-driven gather, dense bmm
            torch.testing.assert_close(spsp_from_trace(q, pre, max_density=density), ref, atol=1e-12, rtol=1e-12)
