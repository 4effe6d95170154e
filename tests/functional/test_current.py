"""Event-driven synaptic current (``functional.current``) against the dense product."""
from __future__ import annotations

import torch

from hm2bp.functional.current import synaptic_current


def test_gathered_current_equals_the_dense_product_for_every_spike_dtype():
    g = torch.Generator().manual_seed(0)
    spikes = torch.rand(20, 5, 30, generator=g) < 0.05
    w = torch.randn(30, 11, generator=g, dtype=torch.float64)
    ref = spikes.double() @ w
    for s in (spikes, spikes.to(torch.uint8), spikes.double()):
        out, index = synaptic_current(s, w, return_events=True)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        assert torch.equal(index, spikes.reshape(-1).nonzero().squeeze(1))  # flat row-major events


def test_dense_input_takes_the_gemm_and_float_values_are_kept():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 6, generator=g)
    dense = (torch.rand(4, 3, 8, generator=g) < 0.6).float()
    out, index = synaptic_current(dense, w, return_events=True)
    assert index is None  # above the sparse threshold: the dense GEMM, no events
    torch.testing.assert_close(out, dense @ w)
    weighted = torch.zeros(4, 3, 8)
    weighted[1, 2, 5] = 0.5  # a non-binary value is gathered with its weight
    weighted[3, 0, 0] = 2.0
    torch.testing.assert_close(synaptic_current(weighted, w), weighted @ w)
    empty = torch.zeros(2, 3, 8, dtype=torch.bool)
    assert torch.equal(synaptic_current(empty, w), torch.zeros(2, 3, 6))


def test_spike_index_word_scan_equals_nonzero():
    from hm2bp.functional.current import spike_index

    g = torch.Generator().manual_seed(0)
    for n in (0, 1, 7, 8, 9, 100, 1003):
        for p in (0.0, 0.01, 0.5, 1.0):
            x = torch.rand(n, generator=g) < p
            for v in (x, x.to(torch.uint8), x.double()):
                assert torch.equal(spike_index(v), v.reshape(-1).nonzero().squeeze(1))
    x = torch.rand(50, 3, 7, generator=g) < 0.3
    for view in (x[1:], x[3:], x[:, 1], x.transpose(0, 2)):  # unaligned offsets, strided views
        assert torch.equal(spike_index(view), view.reshape(-1).nonzero().squeeze(1))
