"""LIF simulator dynamics pinned by hand (spec §1.2)."""
from __future__ import annotations

import torch

from hm2bp.functional import lif_simulate


def test_single_input_trace_by_hand():
    T = 6
    cur = torch.zeros(T, 1, 1, dtype=torch.float64)
    cur[1] = 8.0  # one spike of weight 8 delivered at t = 1
    # ep: t1 = 8, t2 = 7, t3 = 6.125; v: t1 = 1, t2 = 63/64 + 7/8, ...
    v, ep, vs = 0.0, 0.0, []
    for t in range(T):
        v *= 63 / 64
        ep *= 7 / 8
        if t:
            ep += cur[t].item()
            v += ep / 8
        vs.append(v)
    assert abs(vs[1] - 1.0) < 1e-12 and abs(vs[2] - (63 / 64 + 7 / 8)) < 1e-12
    thr = vs[3] - 1e-9  # first crossing at t = 3
    s = lif_simulate(cur, thr, threshold_eps=0.0)[:, 0, 0]
    assert s.tolist() == [False, False, False, True, False, False]


def test_no_spike_at_t0_and_refractory_interval():
    T = 50
    cur = torch.full((T, 2, 3), 100.0)
    s = lif_simulate(cur, 1.0)
    assert not s[0].any()
    times = s[:, 0, 0].nonzero().flatten()
    assert times[0] == 1
    assert torch.all(times.diff() == 3)  # clamp at t_f+1 and t_f+2: ISI = T_ref + 1


def test_synaptic_trace_is_not_reset():
    """After a spike only v resets: the trace keeps driving, so a neuron can fire again without input."""
    T = 40
    cur = torch.zeros(T, 1, 1)
    cur[1] = 30.0
    s = lif_simulate(cur, 2.0)[:, 0, 0]
    assert s.sum() >= 2


def test_lateral_inhibition_uses_previous_step():
    T = 30
    cur = torch.zeros(T, 1, 2)
    cur[1:, 0, 0] = 5.0
    cur[1:, 0, 1] = 1.0
    free = lif_simulate(cur, 3.0)
    lat = -5.0 * (1 - torch.eye(2))
    inhibited = lif_simulate(cur, 3.0, lateral=lat)
    assert inhibited[:, 0, 1].sum() < free[:, 0, 1].sum()
    first = int(free[:, 0, 0].nonzero()[0])
    assert torch.equal(inhibited[: first + 1], free[: first + 1])  # no effect until a spike at t-1
