"""The network's count-level chaining (1-byte trains + differentiable counts between fully
connected layers) against chaining the public float-train layer calls."""
from __future__ import annotations

import torch

from hm2bp import SpikeCountLoss, SpikingNetwork
from hm2bp.functional.spsp import InputEvents


def _net():
    torch.manual_seed(0)
    return SpikingNetwork("40-30-20-5", [2.0, 2.0, 1.5], output_lateral_inhibition=1.0, spsp="official",
                          target_injection=10, reg_lambda=1.0, reg_beta=0.1).double()


def test_count_level_chain_equals_float_trains_layer_by_layer():
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(120, 6, 40, generator=g) < 0.08).to(torch.uint8)
    y = torch.randint(0, 5, (6,), generator=g)
    loss_fn = SpikeCountLoss()

    net = _net()
    outs = net(x, target=y, return_all=True)
    assert outs["fc1"].dtype == torch.bool and outs["fc2"].dtype == torch.bool  # 1-byte hidden trains
    assert outs["output"].dtype == torch.float64 and outs["output"].requires_grad
    loss_fn(outs["output"].sum(0), y).backward()
    chained = {k: p.grad.clone() for k, p in net.named_parameters()}

    ref = _net()
    h = x.double()
    for name, layer in ref.layers.items():
        h = layer(h, target=y if name == "output" else None)  # float trains, grad through x.sum(0)
        assert torch.equal(h.bool(), outs[name].bool())
    loss_fn(h.sum(0), y).backward()
    for k, p in ref.named_parameters():
        torch.testing.assert_close(chained[k], p.grad, rtol=1e-10, atol=1e-10)
        assert p.grad.abs().sum() > 0


def test_no_grad_forward_keeps_nothing_and_matches():
    net = _net()
    x = (torch.rand(50, 3, 40, generator=torch.Generator().manual_seed(2)) < 0.1).to(torch.uint8)
    with torch.no_grad():
        out = net(x)
    assert not out.requires_grad and out.dtype == torch.float64
    assert torch.equal(out, net(x).detach())


def test_input_events_sorted_by_sample_input_time_and_sliced_by_sample():
    g = torch.Generator().manual_seed(4)
    spikes = torch.rand(30, 5, 7, generator=g) < 0.2
    ev = InputEvents.from_spikes(spikes)
    b, j, s = spikes.permute(1, 2, 0).nonzero(as_tuple=True)  # (b, j, t) lexicographic
    assert torch.equal(ev.b, b) and torch.equal(ev.j, j) and torch.equal(ev.s, s)
    part = ev.samples(2, 4)
    b2, j2, s2 = spikes[:, 2:4].permute(1, 2, 0).nonzero(as_tuple=True)
    assert torch.equal(part.b, b2) and torch.equal(part.j, j2) and torch.equal(part.s, s2)
    assert part.shape == (30, 2, 7)
    assert abs(ev.density() - spikes.double().mean().item()) < 1e-12
