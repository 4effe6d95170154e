"""The Spikes protocol: every layer takes and returns Spikes (1-byte trains, counts carrying dE/do, index)."""
from __future__ import annotations

import torch

import hm2bp
from hm2bp.layers import Spikes


def _data(shape, p, seed):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).to(torch.uint8)


def test_every_layer_kind_takes_and_returns_spikes():
    torch.manual_seed(0)
    conv = hm2bp.SpikingConv2d(1, 3, 3, 0.6, init_range=1.0).double()
    pool = hm2bp.SpikingPool2d(2, 0.5)
    fc = hm2bp.SpikingLinear(3 * 4 * 4, 5, 1.0).double()
    s = Spikes.of(_data((60, 2, 1, 10, 10), 0.2, 1))
    assert s.counts is None and s.index is None
    for layer in (conv, pool):
        s = layer(s)
        assert isinstance(s, Spikes) and s.trains.dtype == torch.bool
        assert s.counts.dtype == torch.float64 and s.counts.requires_grad
        assert torch.equal(s.counts, s.trains.sum(0).double())
        assert torch.equal(s.index.long(), s.trains.reshape(-1).nonzero().squeeze(1))  # flat row-major
    s = fc(s.reshape(-1))
    assert s.trains.shape == (60, 2, 5) and torch.equal(s.index.long(), s.trains.reshape(-1).nonzero().squeeze(1))
    g = torch.randn(2, 5, dtype=torch.float64)
    (s.counts * g).sum().backward()
    assert conv.weight.grad.abs().sum() > 0 and fc.weight.grad.abs().sum() > 0


def test_reshape_keeps_the_flat_index_and_the_gradient_path():
    x = torch.rand(5, 2, 2, 3, 3, dtype=torch.float64).round().requires_grad_(True)
    s = Spikes.of(x)
    assert torch.equal(s.counts, x.detach().sum(0)) and s.counts.requires_grad
    flat = s.reshape(-1)
    assert flat.trains.shape == (5, 2, 18) and flat.counts.shape == (2, 18)
    flat.counts.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # dE/do broadcast over time


def test_float_trains_carry_the_count_gradient():
    counts = torch.tensor([[2.0, 0.0]], requires_grad=True)
    trains = torch.tensor([[[1, 0]], [[1, 0]]], dtype=torch.bool)
    out = Spikes(trains, counts).float_trains()
    assert out.dtype == torch.float32 and torch.equal(out, trains.float())
    (out.sum(0) * torch.tensor([[3.0, -1.0]])).sum().backward()
    assert torch.equal(counts.grad, torch.tensor([[3.0, -1.0]]))
    assert not Spikes(trains).float_trains().requires_grad


def test_network_forward_spikes_equals_the_layers_chained_by_hand():
    """forward_spikes (and forward, built on it) against the public float-train layer calls chained
    by hand: image input as [T, B, 1, H, W], the feature map flattened channel-major before fc1."""
    torch.manual_seed(3)
    net = hm2bp.SpikingNetwork("8x8-3C3-P2-12-4", [0.6, 0.5, 1.0, 1.0]).double()
    x = _data((50, 3, 8, 8), 0.2, 4)
    layers = net.forward_spikes(x)
    outs = net(x, return_all=True)
    assert list(layers) == list(outs) == net.layer_names
    h = x.unsqueeze(2)
    for name, layer in net.layers.items():
        if isinstance(layer, hm2bp.SpikingLinear) and h.dim() > 3:
            h = h.flatten(2)
        h = layer(h)
        s = layers[name]
        assert isinstance(s, Spikes) and torch.equal(s.trains.bool(), h.bool()), name
        assert h.sum() > 0 or name == "output", name
    assert torch.equal(outs["output"], h)
    assert outs["output"].dtype == torch.float64
