"""Consecutive per-sample updates on real MNIST: hm2bp equals a port of the authors' training step.

The golden files check one update, and for the hidden layers of the MNIST configuration only the
signs of one Adam step. Here hm2bp's 784-800-10 network with the official rule takes 20 batch-1 Adam
steps on real MNIST trains, next to ``tests/official_port.py``, a float64 numpy port of the authors'
kernels (spike-time S-PSP loops, effect ratio, side effect, lateral factor, target injection,
regulariser, Adam, output-first layer order). Every weight of both layers must agree after every
step, so no state that persists across samples (optimizer, events, buffers) can differ.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hm2bp import SpikeCountLoss, SpikingNetwork
from hm2bp.datamodules import MNISTDataModule
from tests.official_port import OfficialConfig, OfficialLayer, forward, train_sample


def _network() -> SpikingNetwork:
    return SpikingNetwork(
        "784-800-10", [20, 8], output_lateral_inhibition=1.0, spsp="official", effect_ratio=True,
        side_effect=True, lateral_factor=True, target_injection=35, reg_lambda=10, reg_beta=0.04,
        reg_limit=8, fc_init=1.0,
    ).double()


@pytest.mark.slow
def test_twenty_batch1_adam_steps_follow_the_authors_rule(shared_data):
    torch.manual_seed(0)
    dm = MNISTDataModule(data_dir=shared_data, batch_size=1, time_steps=400)
    dm.setup("fit")
    net = _network()
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    port = [OfficialLayer(params[0].detach().numpy().copy(), 20.0),
            OfficialLayer(params[1].detach().numpy().copy(), 8.0, lateral=1.0)]
    cfg = OfficialConfig()
    loss_fn = SpikeCountLoss(35, 5, 5)
    injected = 0
    for k in range(20):
        x, y, idx = dm.train_set[k]
        spikes = dm.encode(x[None], torch.tensor([idx]), "train", 0).double()
        label = torch.tensor([y])
        trains = forward(port, spikes[:, 0].reshape(400, -1).numpy(), cfg)
        injected += int(trains[-1][:, y].sum() == 0)
        opt.zero_grad()
        counts = net(spikes, target=label).sum(0)
        loss_fn(counts, label).backward()
        opt.step()
        port_counts = train_sample(port, spikes[:, 0].reshape(400, -1).numpy(), int(y), cfg)
        assert counts[0].detach().numpy().tolist() == port_counts.tolist(), f"step {k}: output counts differ"
        for p, layer, name in zip(params, port, ("hidden", "output")):
            err = np.abs(p.detach().numpy() - layer.w).max()
            assert err < 1e-11, f"step {k}: {name} weights differ by {err:.3g}"
    assert injected > 0  # the target-injection branch was exercised


def test_port_detects_a_changed_factor(shared_data):
    """The comparison can fail: halving the regulariser in the port moves the hidden weights off."""
    import tests.official_port as port_mod

    torch.manual_seed(1)
    dm = MNISTDataModule(data_dir=shared_data, batch_size=1, time_steps=400)
    dm.setup("fit")
    net = _network()
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    port = [OfficialLayer(params[0].detach().numpy().copy(), 20.0),
            OfficialLayer(params[1].detach().numpy().copy(), 8.0, lateral=1.0)]
    x, y, idx = dm.train_set[0]
    spikes = dm.encode(x[None], torch.tensor([idx]), "train", 0).double()
    counts = net(spikes, target=torch.tensor([y])).sum(0)
    SpikeCountLoss(35, 5, 5)(counts, torch.tensor([y])).backward()
    opt.step()
    original = port_mod.regulariser
    port_mod.regulariser = lambda w, cfg: 0.5 * original(w, cfg)
    try:
        train_sample(port, spikes[:, 0].reshape(400, -1).numpy(), int(y), OfficialConfig())
    finally:
        port_mod.regulariser = original
    assert np.abs(params[0].detach().numpy() - port[0].w).max() > 1e-6
