"""LIF simulator dynamics pinned by hand (docs/algorithm.md, "Neuron model")."""
from __future__ import annotations

import pytest
import torch

from hm2bp.functional import LIFParams, lif_simulate


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
    s = lif_simulate(cur, LIFParams(thr, threshold_eps=0.0))[:, 0, 0]
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


def _reference_lif(cur, threshold, tau_m, tau_s, refractory, lateral=None, eps=1e-6):
    """The neuron model written step by step with bool masks: leak, input (+ lateral at t-1), integrate,
    clamp while a spike fell within the last T_ref steps, fire, reset v."""
    T, B, N = cur.shape
    v = torch.zeros(B, N, dtype=cur.dtype)
    ep = torch.zeros_like(v)
    s = torch.zeros(T, B, N, dtype=torch.bool)
    for t in range(1, T):
        v = v * (1 - 1 / tau_m)
        ep = ep * (1 - 1 / tau_s) + cur[t]
        if lateral is not None:
            ep = ep + s[t - 1].to(cur.dtype) @ lateral.t()
        v = v + ep / tau_s
        if refractory:
            recent = s[max(1, t - refractory) : t].any(0) if t > 1 else torch.zeros_like(s[0])
            v = torch.where(recent, torch.zeros_like(v), v)
        s[t] = v > threshold - eps
        v = torch.where(s[t], torch.zeros_like(v), v)
    return s


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_blocked_float_scan_equals_the_step_by_step_definition(dtype):
    """LIFScan (float masks, u = tau_s v, implied reset, blocks) gives the same spikes as the
    definition, for every refractory period, with and without lateral input, any block size."""
    g = torch.Generator().manual_seed(3)
    cur = torch.randn(160, 4, 12, generator=g, dtype=dtype) * 3
    lat = -0.7 * (1 - torch.eye(12, dtype=dtype))
    for refractory in (0, 1, 2, 3):
        for lateral in (None, lat):
            ref = _reference_lif(cur, 4.0, 20.0, 5.0, refractory, lateral)
            assert ref.sum() > 50
            for block in (1, 7, 64, 500):
                got = lif_simulate(cur, LIFParams(4.0, tau_m=20.0, tau_s=5.0, refractory=refractory), lateral=lateral,
                                   block=block)
                assert torch.equal(got, ref), (refractory, lateral is not None, block)


def test_scan_counts_equal_the_spike_sums():
    from hm2bp.functional.lif import LIFScan

    cur = torch.randn(90, 3, 7, generator=torch.Generator().manual_seed(1)) * 4
    spikes = torch.zeros(cur.shape, dtype=torch.bool)
    scan = LIFScan(spikes, LIFParams(3.0))
    for t0 in range(0, 90, 16):
        scan.run(t0, cur[t0 : t0 + 16])
    assert torch.equal(scan.counts, spikes.sum(0).float())
    assert torch.equal(spikes, lif_simulate(cur, 3.0))
