"""``hm2bp.metrics``: spike statistics against hand-counted spike trains, and exactness under DDP."""
from __future__ import annotations

import socket

import pytest
import torch

from hm2bp.functional import LIFParams
from hm2bp.functional.lif import lif_simulate
from hm2bp.metrics import SpikeStatistics, TargetCountStatistics

# Fixed spike trains [T=6, B=3, N=4]; T_ref = 2, so the maximum count in 6 steps is 2.
_TRAINS = {  # (sample, neuron): spike times
    (0, 0): [1, 4], (0, 2): [3], (0, 3): [1, 4],
    (1, 0): [2], (1, 3): [2, 5],
    (2, 2): [5], (2, 3): [1, 4],
}
T, B, N = 6, 3, 4


def fixed_spikes() -> torch.Tensor:
    s = torch.zeros(T, B, N, dtype=torch.bool)
    for (b, n), times in _TRAINS.items():
        s[times, b, n] = True
    return s


def test_counts_by_hand():
    counts = fixed_spikes().sum(0).float()
    assert counts.tolist() == [[2, 0, 1, 2], [1, 0, 0, 2], [0, 0, 1, 2]]


def test_spike_statistics_by_hand():
    m = SpikeStatistics(num_neurons=N, refractory=2, saturation_tol=0.1, bins=3)
    m.update(fixed_spikes().sum(0).float(), time_steps=T)
    r = m.compute()
    # 11 spikes over 3 samples x 4 neurons x 6 steps
    assert r["rate"].item() == pytest.approx(11 / 72)
    assert r["count"].item() == pytest.approx(11 / 12)
    # silent (sample, neuron) pairs: s0 n1; s1 n1 n2; s2 n0 n1
    assert r["silent_frac"].item() == pytest.approx(5 / 12)
    # neuron 1 never fires
    assert r["dead_frac"].item() == pytest.approx(1 / 4)
    # saturated: count >= 0.9 * 6 / 3 = 1.8, i.e. 2: s0 n0 n3, s1 n3, s2 n3
    assert r["saturated_frac"].item() == pytest.approx(4 / 12)
    # per-neuron rates 3/18, 0, 2/18, 6/18; only neuron 3 is at 1/(T_ref+1)
    torch.testing.assert_close(r["neuron_rates"], torch.tensor([3, 0, 2, 6], dtype=torch.float64) / 18)
    assert r["epoch_saturated_frac"].item() == pytest.approx(1 / 4)
    # rates c/6 in 3 bins of [0, 1/3]: c=0 -> bin 0 (5 pairs), c=1 -> bin 1 (3), c=2 -> last bin (4)
    assert r["hist"].tolist() == [5, 3, 4]
    torch.testing.assert_close(m.hist_edges, torch.tensor([0, 1 / 9, 2 / 9, 1 / 3], dtype=torch.float64))
    assert r["samples"].item() == 3 and r["steps"].item() == 18


def test_spike_statistics_accumulates_batches_and_varying_T():
    counts = fixed_spikes().sum(0)
    one = SpikeStatistics(N, refractory=2)
    one.update(counts, T)
    one.update(torch.tensor([[0, 0, 0, 5]]), 15)  # a second batch with T = 15: 5 = max count
    r = one.compute()
    assert r["rate"].item() == pytest.approx(16 / (4 * (18 + 15)))
    assert r["count"].item() == pytest.approx(16 / 16)
    assert r["silent_frac"].item() == pytest.approx((5 + 3) / 16)
    assert r["saturated_frac"].item() == pytest.approx((4 + 1) / 16)
    assert r["neuron_rates"][3].item() == pytest.approx(11 / 33)
    # split into single samples: same result
    split = SpikeStatistics(N, refractory=2)
    for b in range(B):
        split.update(counts[b : b + 1], T)
    split.update(torch.tensor([[0, 0, 0, 5]]), 15)
    for key, v in split.compute().items():
        torch.testing.assert_close(v, r[key])
    one.reset()
    one.update(counts, T)
    assert one.compute()["rate"].item() == pytest.approx(11 / 72)


def test_spike_statistics_conv_shape_and_int_counts():
    counts = torch.tensor([[[[0, 3], [1, 0]]], [[[2, 0], [0, 0]]]])  # [B=2, C=1, 2, 2] int
    m = SpikeStatistics(num_neurons=4, refractory=0, bins=4)
    m.update(counts, time_steps=4)
    r = m.compute()
    assert r["rate"].item() == pytest.approx(6 / 32)
    assert r["dead_frac"].item() == pytest.approx(1 / 4)  # neuron (1, 1)
    assert r["hist"].tolist() == [5, 1, 1, 1]  # rates 0 x5, 1/4, 2/4, 3/4 on [0, 1]


def test_saturation_matches_the_lif_refractory_limit():
    """A neuron driven as hard as possible fires every T_ref + 1 steps: saturated, not above max."""
    T_sim = 30
    drive = torch.zeros(T_sim, 2, 2)
    drive[:, :, 0] = 1e3  # neuron 0: maximal drive; neuron 1: none
    spikes = lif_simulate(drive, LIFParams(1.0, refractory=2))
    counts = spikes.sum(0)
    assert counts[:, 0].tolist() == [10, 10]  # spikes at t = 1, 4, ..., 28
    m = SpikeStatistics(2, refractory=2)
    m.update(counts, T_sim)
    r = m.compute()
    assert r["saturated_frac"].item() == pytest.approx(0.5)
    assert r["epoch_saturated_frac"].item() == pytest.approx(0.5)
    assert r["silent_frac"].item() == pytest.approx(0.5)
    assert r["hist"][-1].item() == 2 and r["hist"][0].item() == 2


def test_spike_statistics_rejects_bad_input():
    with pytest.raises(ValueError, match="num_neurons"):
        SpikeStatistics(0)
    with pytest.raises(ValueError, match="saturation_tol"):
        SpikeStatistics(3, saturation_tol=1.0)
    m = SpikeStatistics(3)
    with pytest.raises(ValueError, match="built for 3"):
        m.update(torch.zeros(2, 4), 10)
    with pytest.raises(ValueError, match="time_steps"):
        m.update(torch.zeros(2, 3), 0)


def test_target_count_statistics_by_hand():
    m = TargetCountStatistics(desired=4)
    m.update(torch.tensor([[5.0, 1, 0], [0, 2, 0], [3, 3, 3]]), torch.tensor([0, 1, 2]))
    m.update(torch.tensor([[0.0, 4, 0]]), torch.tensor([0]))  # target silent
    r = m.compute()
    assert r["target_count"].item() == pytest.approx(10 / 4)  # 5, 2, 3, 0
    assert r["target_error"].item() == pytest.approx((1 + 2 + 1 + 4) / 4)
    assert r["target_silent_frac"].item() == pytest.approx(1 / 4)
    assert r["other_count"].item() == pytest.approx(11 / 8)
    with pytest.raises(ValueError, match="samples"):
        m.update(torch.zeros(2, 3), torch.tensor([0]))


# ---------------------------------------------------------------------- DDP (2 processes, gloo)
def _shards():
    """Uneven shards with different T per rank: rank 0 gets samples 0-1 (T=6), rank 1 sample 2
    (T=6) and an extra sample with T=15."""
    counts = fixed_spikes().sum(0)
    extra = torch.tensor([[0, 1, 0, 5]])
    out = torch.tensor([[5.0, 1, 0], [0, 2, 0], [3, 3, 3], [0, 4, 0]])
    labels = torch.tensor([0, 1, 2, 0])
    return [
        [(counts[:2], T, out[:2], labels[:2])],
        [(counts[2:], T, out[2:3], labels[2:3]), (extra, 15, out[3:], labels[3:])],
    ]


def _compute(shards):
    m, t = SpikeStatistics(N, refractory=2, bins=5), TargetCountStatistics(desired=4)
    for c, steps, o, y in shards:
        m.update(c, steps)
        t.update(o, y)
    return {**m.compute(), **{f"target/{k}": v for k, v in t.compute().items()}}


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        result = _compute(_shards()[rank])
        torch.save(result, f"{out_dir}/rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_equal_one_process(tmp_path):
    import torch.multiprocessing as mp

    single = _compute(_shards()[0] + _shards()[1])
    mp.start_processes(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="fork", join=True)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got.keys() == single.keys()
        for key, v in single.items():
            torch.testing.assert_close(got[key], v, rtol=0, atol=0, msg=f"rank {rank}: {key}")
    # and the numbers are the hand-counted ones
    assert single["rate"].item() == pytest.approx(17 / (4 * (18 + 15)))
    assert single["dead_frac"].item() == 0.0  # neuron 1 fires in the extra sample
    assert single["target/target_error"].item() == pytest.approx(2.0)
