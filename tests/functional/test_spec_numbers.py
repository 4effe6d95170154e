"""Hand-computable cases (the worked example of docs/algorithm.md, "Spike-train-level PSP" and "Weight update"): S-PSP, T-PSP, delta, side effect, gradients, errors (to 1e-5)."""
from __future__ import annotations

import pytest
import torch

from hm2bp import SpikeCountLoss
from hm2bp.functional import HM2BPRule, LIFParams, LinearForward, PSPKernel, hm2bp_backward, inject_target, spsp

T = 80
W = torch.tensor([[6.0, 4.0]], dtype=torch.float64)
NU = 5.0


def _case():
    pre = torch.zeros(T, 1, 2, dtype=torch.float64)
    pre[[5, 40], 0, 0] = 1  # pre 1
    pre[15, 0, 1] = 1  # pre 2
    post = torch.zeros(T, 1, 1, dtype=torch.float64)
    post[[20, 60], 0, 0] = 1
    return pre, post


CASES = {
    # convention: e1, e2, a, delta*e, sigma, code gradient, dE/do_pre
    "paper": ((1.545331, 0.704222), 12.088872, (-2.472530, -1.126755), 1.208887,
              (-5.461539, -2.488874), (-7.417589, -4.507018)),
    "official": ((1.545221, 0.637584), 11.821664, (-2.472354, -1.020134), 1.182166,
                 (-5.395089, -2.226103), (-7.417063, -4.080537)),
}


@pytest.mark.parametrize("convention", ["paper", "official"])
def test_section6_worked_numbers(convention):
    e_ref, a_ref, de_ref, sigma_ref, grad_ref, err_ref = CASES[convention]
    pre, post = _case()
    e = spsp(pre, post, convention=convention)[0, 0]
    torch.testing.assert_close(e, torch.tensor(e_ref, dtype=torch.float64), atol=1e-5, rtol=0)
    a = (W[0] * e).sum()
    assert abs(a.item() - a_ref) < 1e-5
    counts = post.sum(0)  # o = 2
    g = torch.autograd.grad(SpikeCountLoss(desired=10, undesired=0, margin=5)(counts.requires_grad_(), torch.tensor([0])), counts)[0]
    assert g.item() == -8.0  # |2 - 10| = 8 > margin: dE/do = o - y
    delta = g / NU
    assert delta.item() == pytest.approx(-1.6)
    torch.testing.assert_close(delta[0, 0] * e, torch.tensor(de_ref, dtype=torch.float64), atol=1e-5, rtol=0)
    sigma = a / (NU * counts[0, 0])
    assert abs(sigma.item() - sigma_ref) < 1e-5
    neuron, rule = LIFParams(NU, psp=convention), HM2BPRule()
    gw, gin, _ = hm2bp_backward(LinearForward(pre, post), W, g, neuron, rule)
    torch.testing.assert_close(gw[0], torch.tensor(grad_ref, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(gin[0], torch.tensor(err_ref, dtype=torch.float64), atol=1e-5, rtol=0)
    neuron, plain = LIFParams(NU, psp=convention), HM2BPRule(side_effect=False)
    gw_plain, _, _ = hm2bp_backward(LinearForward(pre, post), W, g, neuron, plain)
    torch.testing.assert_close(gw_plain[0], torch.tensor(de_ref, dtype=torch.float64), atol=1e-5, rtol=0)


def test_section6_exact_discrete_spsp():
    pre, post = _case()
    e = spsp(pre, post, convention="exact")[0, 0]
    torch.testing.assert_close(e, torch.tensor([1.567328, 0.714018], dtype=torch.float64), atol=1e-5, rtol=0)


def test_discrete_unit_psp_values():
    from hm2bp.functional import free_psp

    s = torch.zeros(20, 1, dtype=torch.float64)
    s[0] = 1
    p = free_psp(s, PSPKernel.make("exact"))[:, 0]
    want = {1: 0.125, 2: 0.232422, 3: 0.324493, 5: 0.470137, 10: 0.675675, 15: 0.748193}
    for lag, v in want.items():
        assert abs(p[lag].item() - v) < 1e-6, lag
    c = free_psp(s, PSPKernel.make("paper"))[:, 0]
    for lag, v in {1: 0.116571, 2: 0.217637, 3: 0.305048, 5: 0.445243, 10: 0.650103, 15: 0.728812}.items():
        assert abs(c[lag].item() - v) < 1e-6, lag


def test_silent_post_constants_and_ratio_fallbacks():
    """Silent post neuron (docs/algorithm.md, "Official conventions"): o_i = 0 < o_j -> e = 0.1 and r = 0.5; o_j = 0 -> rho = 1."""
    T_ = 50
    pre = torch.zeros(T_, 1, 2, dtype=torch.float64)
    pre[10, 0, 0] = 1  # pre 0 active, pre 1 silent
    post = torch.zeros(T_, 1, 1, dtype=torch.float64)  # silent post
    w = torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    g = torch.tensor([[-4.0]], dtype=torch.float64)
    neuron, rule = LIFParams(2.0, psp="official"), HM2BPRule()
    gw, gin, _ = hm2bp_backward(LinearForward(pre, post), w, g, neuron, rule)
    delta = -2.0
    sigma = 0.5 * (2.0 + 3.0) / 2.0
    torch.testing.assert_close(gw, torch.tensor([[delta * 0.1 * (1 + sigma), 0.0]], dtype=torch.float64))
    torch.testing.assert_close(gin, torch.tensor([[delta * 2.0, delta * 3.0]], dtype=torch.float64))  # rho = 1


def test_target_injection_train():
    post = torch.zeros(400, 2, 3)
    counts = post.sum(0)
    counts[1, 2] = 4  # sample 1's target is not silent: untouched
    out = inject_target(post, counts, torch.tensor([1, 2]), desired=35, refractory=2)
    times = out[:, 0, 1].nonzero().flatten().tolist()
    assert times == list(range(11, 400, 11)) and len(times) == 36
    assert out[:, 1].sum() == 0 and out[:, 0, [0, 2]].sum() == 0
    assert inject_target(torch.zeros(450, 1, 1), torch.zeros(1, 1), torch.tensor([0]), 35, 2).sum() == 37
