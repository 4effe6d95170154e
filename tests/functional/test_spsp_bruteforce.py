"""Matrix-form S-PSP == a pairwise brute force written from the spec's definitions (float64).

* exact: simulate each (post i, pre j) pair with unit weight on j alone, applying the
  reset and refractory clamps at i's given spike times, and sum v at i's spike times.
* official (docs/algorithm.md, "Spike-train-level PSP"): the closed-form kernel over spike pairs with the +T_ref pre shift,
  first reset at 1, the 4·tau_m window and t_pre >= 1.
* paper: the same kernel without shift or window, first reset at 0.
"""
from __future__ import annotations

import math
import random

import pytest
import torch

from hm2bp.functional import PSPKernel, spsp
from tests.helpers.spike_trains import random_post_train

TAU_M, TAU_S, TREF = 64.0, 8.0, 2


def brute_exact(pre_times, post_times, T):
    ep = v = 0.0
    ref = 0
    total = 0.0
    pre = set(pre_times)
    post = set(post_times)
    for t in range(T):
        v *= 1 - 1 / TAU_M
        ep *= 1 - 1 / TAU_S
        if t == 0:
            continue
        if (t - 1) in pre:
            ep += 1.0
        v += ep / TAU_S
        if ref > 0:
            v = 0.0
            ref -= 1
        if t in post:
            total += v
            v = 0.0
            ref = TREF
    return total


def kernel(s, t):
    c = 1.0 / (1.0 - TAU_S / TAU_M)
    m = min(s, t)
    return c * math.exp(-max(t - s, 0) / TAU_S) * (math.exp(-m / TAU_M) - math.exp(-m / TAU_S))


def brute_closed_form(pre_times, post_times, official: bool):
    shift = TREF if official else 0
    last_reset = 1 if official else 0
    total = 0.0
    for tp in post_times:
        for tq in pre_times:
            if official and (tq < max(1, tp - 4 * TAU_M) or tq >= tp):
                continue
            if not official and tq >= tp:
                continue
            pre_time = tq + shift
            if pre_time > tp:
                continue
            total += kernel(tp - last_reset, tp - pre_time)
        last_reset = tp + TREF
    return total


def random_case(seed):
    rng = random.Random(seed)
    T = rng.choice([30, 60, 120, 300, 700])
    n_in, n_out, batch = rng.randint(1, 4), rng.randint(1, 3), rng.randint(1, 2)
    pre = torch.zeros(T, batch, n_in, dtype=torch.float64)
    post = torch.zeros(T, batch, n_out, dtype=torch.float64)
    for b in range(batch):
        for j in range(n_in):
            p = rng.choice([0.0, 0.02, 0.1, 0.3])
            for t in range(T):
                if rng.random() < p:
                    pre[t, b, j] = 1
        for i in range(n_out):
            rate = rng.choice([0.005, 0.05, 0.3])  # includes long gaps beyond the 4·tau_m window
            for t in random_post_train(rng, T, rate):
                post[t, b, i] = 1
    return pre, post


def times(train):
    return train.nonzero().flatten().tolist()


@pytest.mark.parametrize("convention", ["exact", "official", "paper"])
def test_matrix_form_equals_pairwise_bruteforce(convention):
    worst = 0.0
    n_checked = 0
    for seed in range(120):
        pre, post = random_case(seed)
        T, B, n_in = pre.shape
        e = spsp(pre, post, PSPKernel.make(convention, TAU_M, TAU_S, TREF))
        for b in range(B):
            for i in range(post.shape[2]):
                for j in range(n_in):
                    pt, qt = times(pre[:, b, j]), times(post[:, b, i])
                    if convention == "exact":
                        ref = brute_exact(pt, qt, T)
                    else:
                        ref = brute_closed_form(pt, qt, official=convention == "official")
                    worst = max(worst, abs(e[b, i, j].item() - ref))
                    n_checked += 1
    assert n_checked > 300
    assert worst < 1e-9, f"max |matrix - pairwise| = {worst:.3g}"


def test_window_matters_on_long_intervals():
    """The official window drops pre spikes more than 4·tau_m before a post spike."""
    T = 600
    pre = torch.zeros(T, 1, 1, dtype=torch.float64)
    post = torch.zeros(T, 1, 1, dtype=torch.float64)
    pre[200, 0, 0] = 1  # 300 steps before the post spike: outside 4·tau_m = 256
    post[500, 0, 0] = 1
    e_off = spsp(pre, post, convention="official")[0, 0, 0].item()
    e_paper = spsp(pre, post, convention="paper")[0, 0, 0].item()
    assert abs(e_off) < 1e-12 and e_paper > 5e-3


def test_discrete_identity_sum_of_membrane_at_spikes():
    """S-PSP identity: sum_j w_ij e_ij == sum_f v_i(t_f) >= nu o_i for a simulated neuron (exact S-PSP)."""
    g = torch.Generator().manual_seed(3)
    T, n_in, nu = 300, 40, 4.0
    pre = (torch.rand(T, 1, n_in, generator=g, dtype=torch.float64) < 0.05).double()
    pre[0] = 0
    w = torch.rand(1, n_in, generator=g, dtype=torch.float64)
    current = torch.zeros(T, 1, 1, dtype=torch.float64)
    current[1:] = pre[:-1] @ w.t()
    # reference simulation that records v at the firing instants
    v = ep = 0.0
    ref = 0
    v_at_spikes = []
    post = torch.zeros(T, 1, 1, dtype=torch.float64)
    for t in range(T):
        v *= 1 - 1 / TAU_M
        ep *= 1 - 1 / TAU_S
        if t == 0:
            continue
        ep += current[t, 0, 0].item()
        v += ep / TAU_S
        if ref > 0:
            v, ref = 0.0, ref - 1
        if v > nu - 1e-6:
            v_at_spikes.append(v)
            post[t] = 1
            v, ref = 0.0, TREF
    from hm2bp.functional import lif_simulate

    assert torch.equal(lif_simulate(current, nu).double(), post)
    e = spsp(pre, post, convention="exact")[0, 0]
    assert len(v_at_spikes) > 3
    assert abs((w[0] * e).sum().item() - sum(v_at_spikes)) < 1e-9
    assert sum(v_at_spikes) >= nu * len(v_at_spikes)
