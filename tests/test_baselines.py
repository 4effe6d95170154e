"""hm2bp.baselines: surrogate-gradient BPTT on the same LIF neurons as HM2-BP."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import hm2bp
from hm2bp.baselines import BPTTLinear, BPTTNetwork, surrogate_lif
from hm2bp.cli import cli_main
from hm2bp.functional import LIFParams, lif_simulate

REPO = Path(__file__).resolve().parents[1]


def _pair(spec="120-50-10", thresholds=(4.0, 3.0), lateral=1.0, refractory=2):
    torch.manual_seed(1)
    ref = hm2bp.SpikingNetwork(spec, list(thresholds), output_lateral_inhibition=lateral,
                               refractory=refractory).double()
    bptt = BPTTNetwork(spec, list(thresholds), output_lateral_inhibition=lateral, refractory=refractory).double()
    bptt.load_state_dict(ref.state_dict())  # same parameter names and shapes
    return ref, bptt


@pytest.mark.parametrize("refractory", [0, 2, 5])
def test_forward_spikes_equal_hm2bp_float64(refractory):
    ref, bptt = _pair(refractory=refractory)
    x = (torch.rand(150, 6, 120, generator=torch.Generator().manual_seed(2)) < 0.08).to(torch.uint8)
    with torch.no_grad():
        a = ref(x, return_all=True)
        b = bptt(x, return_all=True)
    assert list(a) == list(b) == ["fc1", "output"]
    for name in a:
        assert b[name].dtype == torch.float64 and b[name].shape == a[name].shape
        assert torch.equal(a[name], b[name]), name
        assert a[name].sum() > 20  # non-trivial activity in every layer
    # with autograd on (the training path) the spikes are the same too
    y = torch.randint(0, 10, (6,))
    assert torch.equal(bptt(x, target=y), ref(x, target=y).detach())


def test_surrogate_lif_matches_simulator_with_recurrent_matrix():
    g = torch.Generator().manual_seed(3)
    current = torch.randn(120, 4, 30, generator=g, dtype=torch.float64) * 2.0 + 0.6
    lateral = torch.randn(30, 30, generator=g, dtype=torch.float64) * 0.5  # arbitrary W_lat[post, pre]
    neuron = LIFParams(5.0, tau_m=20.0, tau_s=5.0, refractory=3)
    ref = lif_simulate(current, neuron, lateral=lateral)
    out = surrogate_lif(current, neuron, lateral=lateral)
    assert ref.sum() > 50 and torch.equal(out, ref.to(out.dtype))
    assert not out[0].any()  # no spike at t = 0


def test_gradients_finite_nonzero_and_flow_through_time():
    torch.manual_seed(4)
    net = BPTTNetwork("40-30-5", [3.0, 2.0], output_lateral_inhibition=1.0).double()
    T = 120
    x = (torch.rand(T, 3, 40) < 0.1).double()
    loss_fn = hm2bp.SpikeCountLoss(desired=10, undesired=1, margin=0)
    y = torch.tensor([0, 1, 2])

    def grads(inp):
        net.zero_grad()
        out = net(inp, target=y)
        loss_fn(out.sum(0), y).backward()
        return {n: p.grad.clone() for n, p in net.named_parameters()}

    torch.set_num_threads(2)  # more than one, so the scan's hooks have a setting to switch and restore
    threads = torch.get_num_threads()
    g0 = grads(x)
    assert torch.get_num_threads() == threads  # the single-thread scan hooks restore the setting
    for name, g in g0.items():
        assert torch.isfinite(g).all() and g.abs().sum() > 0, name
    # change only early input spikes (t < 10): the gradient changes, including for the output layer
    x2 = x.clone()
    x2[1:10] = 1.0 - x2[1:10]
    g2 = grads(x2)
    assert not torch.allclose(g0["layers.output.weight"], g2["layers.output.weight"])
    # the gradient w.r.t. an early input step is non-zero although the loss only sees counts at the end:
    # the error signal travelled back through the membrane and synaptic traces (BPTT)
    xin = x.clone().requires_grad_(True)
    loss_fn(net(xin).sum(0), y).backward()
    assert xin.grad[1:5].abs().sum() > 0 and torch.isfinite(xin.grad).all()
    assert xin.grad[-1].abs().sum() == 0  # s_in[T-1] reaches nothing (1-step delay)


def test_gradient_of_surrogate_scan_matches_finite_difference_of_a_smooth_proxy():
    """Without any spike crossing, the scan is linear in the current: check BPTT against autograd-free math."""
    T, N = 30, 3
    current = torch.full((T, 1, N), 0.05, dtype=torch.float64, requires_grad=True)
    out = surrogate_lif(current, LIFParams(100.0, tau_m=10.0, tau_s=4.0, refractory=2), surrogate_slope=5.0)
    assert out.sum() == 0
    out[T - 1].sum().backward()
    # analytic: s[T-1] = H(v[T-1]); dv[T-1]/dI[k] = sum_{t=k}^{T-1} (1-1/tau_s)^(t-k) (1-1/tau_m)^(T-1-t) / tau_s
    with torch.no_grad():
        leak_m, leak_s = 0.9, 0.75
        v = 0.0
        ep = 0.0
        for _ in range(1, T):
            ep = ep * leak_s + 0.05
            v = v * leak_m + ep / 4.0
        dsdv = 1.0 / (100.0 * (1.0 + 5.0 * abs(v - (100.0 - 1e-6)) / 100.0) ** 2)
        for k in (1, 10, T - 1):
            dvdi = sum(leak_s ** (t - k) * leak_m ** (T - 1 - t) / 4.0 for t in range(k, T))
            assert current.grad[k, 0, 0].item() == pytest.approx(dsdv * dvdi, rel=1e-10)
    assert current.grad[0].abs().sum() == 0  # current[0] is ignored


def test_network_interface_mirrors_spiking_network():
    net = BPTTNetwork("784-800-10", [20, 8])
    ref = hm2bp.SpikingNetwork("784-800-10", [20, 8])
    assert net.layer_names == ref.layer_names and net.num_inputs == 784 and net.num_classes == 10
    assert isinstance(net.layers["fc1"], BPTTLinear)
    assert net.layers["output"].lateral is None and net.layers["fc1"].weight.abs().max() <= 1.0
    cnn = BPTTNetwork("28x28-15C5-P2-40C5-P2-300-10", [5, 2, 12, 4, 10, 10])  # the paper CNN (issue 14)
    assert cnn.layer_names == hm2bp.SpikingNetwork("28x28-15C5-P2-40C5-P2-300-10", [5, 2, 12, 4, 10, 10]).layer_names
    assert sum(p.numel() for p in cnn.parameters()) == 210_375
    with pytest.raises(ValueError, match="image input"):
        BPTTNetwork("784-100-4C3-10", [1, 1, 1])
    with pytest.raises(ValueError, match="thresholds"):
        BPTTNetwork("784-800-10", [20])
    with pytest.raises(ValueError, match="expects spikes"):
        BPTTLinear(5, 3, 1.0)(torch.zeros(4, 2, 6))
    # image-shaped input is flattened like SpikingNetwork does
    img = BPTTNetwork("4x4-7-3", [1.0, 1.0])
    assert img(torch.zeros(5, 2, 4, 4)).shape == (5, 2, 3)


def test_digits_bptt_config_fits_through_cli(tmp_path):
    config = str(REPO / "configs" / "experiment" / "digits_bptt.yaml")
    common = ["--data.init_args.time_steps", "30", "--trainer.default_root_dir", str(tmp_path),
              # counts reachable at T=30 (at most 10 spikes with refractory 2)
              "--model.loss.init_args.desired", "8", "--model.loss.init_args.undesired", "1",
              "--model.loss.init_args.margin", "1",
              "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"]
    # same seed_everything -> same initial weights as the fit run below
    w0 = cli_main(["--config", config, *common], run=False).model.network.layers["fc1"].weight.detach().clone()
    cli = cli_main([
        "fit", "--config", config, *common,
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2",
    ])
    assert isinstance(cli.model.network, BPTTNetwork)
    assert cli.trainer.global_step == 2 and cli.model.time_steps == 30
    w = cli.model.network.layers["fc1"].weight
    assert torch.isfinite(w).all() and not torch.equal(w.detach(), w0)  # BPTT gradients reached the hidden layer
    metrics = cli.trainer.callback_metrics
    assert 0.0 <= float(metrics["test/acc"]) <= 1.0  # test_after_fit ran on the fitted BPTT network


def test_bptt_cnn_forward_spikes_equal_hm2bp_float64_and_gradients_flow():
    spec, thresholds = "12x12-4C3-P2-3C3-30-10", [1.0, 0.5, 1.5, 2.0, 2.0]
    torch.manual_seed(4)
    ref = hm2bp.SpikingNetwork(spec, thresholds, output_lateral_inhibition=1.0).double()
    bptt = BPTTNetwork(spec, thresholds, output_lateral_inhibition=1.0).double()
    bptt.load_state_dict(ref.state_dict())
    assert list(bptt.layers) == ["conv1", "pool1", "conv2", "fc1", "output"]
    x = (torch.rand(120, 3, 12, 12, generator=torch.Generator().manual_seed(5)) < 0.2).to(torch.uint8)
    with torch.no_grad():
        a = ref(x, return_all=True)
        b = bptt(x, return_all=True)
    for name in a:
        assert b[name].shape == a[name].shape, name
        assert torch.equal(a[name].to(torch.float64), b[name]), name
        assert a[name].sum() > 0, name
    y = torch.randint(0, 10, (3,))
    hm2bp.SpikeCountLoss(10, 2, 2)(bptt(x, target=y).sum(0), y).backward()
    for name, p in bptt.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
