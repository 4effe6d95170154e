"""Samples without error drop out of the backward (``functional/live.py``): the narrowed records
against brute force, and every layer's gradients with the drop against the same backward on the
whole batch (float64), for conv (event and dense inputs), pooling and fully connected layers with
the regulariser, bias, lateral inhibition and target injection."""
from __future__ import annotations

import pytest
import torch

import hm2bp.layers.conv
import hm2bp.layers.linear
import hm2bp.layers.pool
from hm2bp import SpikingNetwork
from hm2bp.functional.current import spike_index
from hm2bp.functional.live import LiveSamples


def test_of_lists_the_samples_with_an_error():
    g = torch.zeros(5, 3, 2)
    g[1, 2, 0] = 0.5
    g[4, 0, 1] = -1.0
    live = LiveSamples.of(g)
    assert live.index.tolist() == [1, 4] and live.batch == 5 and live.count == 2 and live.dropped == 3
    assert LiveSamples.of(torch.ones(3, 2)) is None  # every sample live: nothing to narrow
    none = LiveSamples.of(torch.zeros(4, 2))  # no sample live: sample 0 stays, its terms are zeros
    assert none.index.tolist() == [0] and none.dropped == 3


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_flat_index_equals_the_index_of_the_narrowed_trains(dtype):
    g = torch.Generator().manual_seed(3)
    trains = torch.rand(7, 6, 3, 4, generator=g) < 0.2
    live = LiveSamples(torch.tensor([0, 2, 5]), 6)
    index = spike_index(trains).to(dtype)
    narrowed = live.flat(index, 7, 12)
    assert narrowed.dtype == dtype
    assert torch.equal(narrowed.long(), spike_index(trains[:, live.index]).long())
    assert bool((narrowed[1:] > narrowed[:-1]).all())  # ascending stays ascending
    assert live.flat(None, 7, 12) is None


def test_rows_and_scatter():
    live = LiveSamples(torch.tensor([1, 3]), 4)
    x = torch.arange(8.0).view(4, 2)
    assert torch.equal(live.rows(x), x[[1, 3]])
    assert torch.equal(live.rows(x.t(), 1), x.t()[:, [1, 3]])
    back = live.scatter(live.rows(x))
    assert torch.equal(back[[1, 3]], x[[1, 3]]) and not back[[0, 2]].any()
    assert live.rows(None) is None and live.scatter(None) is None


def _net(spec, thresholds):
    torch.manual_seed(0)
    return SpikingNetwork(spec, thresholds, output_lateral_inhibition=1.0, psp="official", target_injection=10,
                          reg_lambda=2.0, reg_beta=0.5, bias=True, conv_init=1.0).double()


NETWORKS = {
    "cnn": ("12x12-4C3-5C3-P2-20-5", [1.5, 1.5, 1.0, 2.0, 1.5], (1, 12, 12)),
    "mlp": ("30-20-5", [1.5, 1.5], (30,)),
}


def _spy(f, seen: list[int]):
    """``f`` that first records the batch size of its first argument (events, trains or a forward record)."""
    def spy(*a, **k):
        first = a[0]
        seen.append(first.post.shape[1] if hasattr(first, "post") else first.shape[1])
        return f(*a, **k)
    return spy


def _grads(spec, thresholds, x, y, upstream, *, drop: bool, monkeypatch, seen: list[int]):
    """Parameter gradients of ``counts.backward(upstream)``; ``seen`` gets the batch size each
    layer's rule ran on. ``drop=False`` runs every sample (the reference)."""
    with monkeypatch.context() as m:
        if not drop:
            m.setattr(LiveSamples, "of", staticmethod(lambda grad_counts: None))
        for module, name in [(hm2bp.layers.conv, "conv_hm2bp_backward_events"), (hm2bp.layers.conv, "conv_hm2bp_backward"),
                             (hm2bp.layers.pool, "pool_hm2bp_backward_events"), (hm2bp.layers.pool, "pool_hm2bp_backward"),
                             (hm2bp.layers.linear, "hm2bp_backward")]:
            m.setattr(module, name, _spy(getattr(module, name), seen))
        net = _net(spec, thresholds)
        counts = net(x, target=y).sum(0)
        counts.backward(upstream)
        return {k: p.grad.clone() for k, p in net.named_parameters()}


@pytest.mark.parametrize("net_name", list(NETWORKS))
@pytest.mark.parametrize("density", [0.06, 0.3], ids=["events", "dense"])
@pytest.mark.parametrize("live_rows", [[1, 4], []], ids=["two-live", "none-live"])
def test_dropping_error_free_samples_changes_no_gradient(net_name, density, live_rows, monkeypatch):
    spec, thresholds, shape = NETWORKS[net_name]
    g = torch.Generator().manual_seed(11)
    B = 6
    x = (torch.rand(60, B, *shape, generator=g) < density).to(torch.uint8)
    y = torch.randint(0, 5, (B,), generator=g)
    upstream = torch.zeros(B, 5, dtype=torch.float64)
    for b in live_rows:
        upstream[b] = torch.randn(5, generator=g, dtype=torch.float64) * 3
    seen_drop, seen_full = [], []
    dropped = _grads(spec, thresholds, x, y, upstream, drop=True, monkeypatch=monkeypatch, seen=seen_drop)
    full = _grads(spec, thresholds, x, y, upstream, drop=False, monkeypatch=monkeypatch, seen=seen_full)
    assert seen_full and set(seen_full) == {B}
    assert set(seen_drop) == {max(1, len(live_rows))}  # every layer's rule ran on the live samples only
    for k in full:
        torch.testing.assert_close(dropped[k], full[k], rtol=1e-10, atol=1e-12)
    if live_rows:
        assert all(full[k].abs().sum() > 0 for k in full)
    else:  # no error anywhere: the regulariser alone, once per sample of the batch
        assert full["layers.output.bias"].abs().sum() == 0
