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

import tests.official_port as port_mod
from hm2bp import SpikeCountLoss, SpikingNetwork
from hm2bp.datamodules import MNISTDataModule
from tests.official_port import OfficialConfig, OfficialLayer, forward, train_sample

LOSS = SpikeCountLoss(35, 5, 5)


def _setup(shared_data, seed: int):
    """The MNIST train split, hm2bp's network with its Adam, and the port holding the same weights."""
    torch.manual_seed(seed)
    dm = MNISTDataModule(data_dir=shared_data, batch_size=1, time_steps=400)
    dm.setup("fit")
    net = SpikingNetwork(
        "784-800-10", [20, 8], output_lateral_inhibition=1.0, spsp="official", effect_ratio=True,
        side_effect=True, lateral_factor=True, target_injection=35, reg_lambda=10, reg_beta=0.04,
        reg_limit=8, fc_init=1.0,
    ).double()
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    port = [OfficialLayer(params[0].detach().numpy().copy(), 20.0),
            OfficialLayer(params[1].detach().numpy().copy(), 8.0, lateral=1.0)]
    return dm, net, opt, port


def _sample(dm, k: int):
    x, y, idx = dm.train_set[k]
    return dm.encode(x[None], torch.tensor([idx]), "train", 0).double(), int(y)


def _hm2bp_step(net, opt, spikes, y: int) -> torch.Tensor:
    opt.zero_grad()
    counts = net(spikes, target=torch.tensor([y])).sum(0)
    LOSS(counts, torch.tensor([y])).backward()
    opt.step()
    return counts[0].detach()


@pytest.mark.slow
def test_twenty_batch1_adam_steps_follow_the_authors_rule(shared_data):
    dm, net, opt, port = _setup(shared_data, 0)
    cfg = OfficialConfig()
    injected = 0
    for k in range(20):
        spikes, y = _sample(dm, k)
        trains_in = spikes[:, 0].reshape(400, -1).numpy()
        injected += int(forward(port, trains_in, cfg)[-1][:, y].sum() == 0)
        counts = _hm2bp_step(net, opt, spikes, y)
        port_counts = train_sample(port, trains_in, y, cfg)
        assert counts.numpy().tolist() == port_counts.tolist(), f"step {k}: output counts differ"
        for p, layer, name in zip(net.parameters(), port, ("hidden", "output")):
            err = np.abs(p.detach().numpy() - layer.w).max()
            assert err < 1e-11, f"step {k}: {name} weights differ by {err:.3g}"
    assert injected > 0  # the target-injection branch was exercised


def test_port_detects_a_changed_factor(shared_data, monkeypatch):
    """The comparison can fail: halving the regulariser in the port moves the hidden weights off."""
    dm, net, opt, port = _setup(shared_data, 1)
    spikes, y = _sample(dm, 0)
    _hm2bp_step(net, opt, spikes, y)
    original = port_mod.regulariser
    monkeypatch.setattr(port_mod, "regulariser", lambda w, cfg: 0.5 * original(w, cfg))
    train_sample(port, spikes[:, 0].reshape(400, -1).numpy(), y, OfficialConfig())
    assert np.abs(next(net.parameters()).detach().numpy() - port[0].w).max() > 1e-6
