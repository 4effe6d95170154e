"""hm2bp -> NIR -> hm2bp: the node mapping, the CubaLIF parameters, and a lossless round trip."""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

from hm2bp import SpikeCountLoss, SpikingNetwork
from hm2bp.nir import METADATA_KEYS, export_nir, import_nir

CNN = ("12x12-4C5-P2-30-10", [5, 2, 10, 8])


def _spikes(net, T=80, B=3, p=0.15, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, *net.input_shape, generator=g) < p).float()


def _round_trip(graph, tmp_path):
    nir.write(tmp_path / "net.nir", graph)
    return nir.read(tmp_path / "net.nir")


def test_mlp_nodes_edges_and_cuba_parameters():
    net = SpikingNetwork("64-100-10", [10, 8], output_lateral_inhibition=1.0, refractory=2)
    g = export_nir(net)
    kinds = {k: type(n).__name__ for k, n in g.nodes.items()}
    assert kinds == {"input": "Input", "fc1": "Affine", "fc1_lif": "CubaLIF", "output": "Affine",
                     "output_lif": "CubaLIF", "output_rec": "Linear", "out": "Output"}
    assert set(g.edges) == {("input", "fc1"), ("fc1", "fc1_lif"), ("fc1_lif", "output"), ("output", "output_lif"),
                            ("output_lif", "output_rec"), ("output_rec", "output_lif"), ("output_lif", "out")}
    lif, dt = g.nodes["fc1_lif"], g.metadata["dt"]
    # forward Euler with dt gives I <- (1 - 1/8) I + x and v <- (1 - 1/64) v + I (hm2bp's u = tau_s v)
    np.testing.assert_allclose(1 - dt / lif.tau_syn, 1 - 1 / 8)
    np.testing.assert_allclose(dt * lif.w_in / lif.tau_syn, 1.0)
    np.testing.assert_allclose(1 - dt / lif.tau_mem, 1 - 1 / 64)
    np.testing.assert_allclose(dt * lif.r / lif.tau_mem, 1.0)
    np.testing.assert_allclose(lif.v_threshold, 8 * (10 - 1e-6))
    assert not lif.v_leak.any() and not lif.v_reset.any()
    assert lif.metadata["refractory_steps"] == 2
    np.testing.assert_array_equal(g.nodes["output_rec"].weight, -(1 - np.eye(10)))
    np.testing.assert_array_equal(g.nodes["fc1"].weight, net.layers["fc1"].weight.detach().double().numpy())
    assert set(METADATA_KEYS) <= set(g.metadata) and g.metadata["delay_steps"] == 1


def test_cnn_nodes():
    g = export_nir(SpikingNetwork(*CNN, output_lateral_inhibition=1.0))
    kinds = [type(g.nodes[k]).__name__ for k in ("conv1", "pool1", "flatten", "fc1")]
    assert kinds == ["Conv2d", "SumPool2d", "Flatten", "Affine"]
    assert g.nodes["conv1_lif"].v_threshold.shape == (4, 8, 8)
    assert g.nodes["pool1_lif"].v_threshold.shape == (4, 4, 4)
    assert ("pool1_lif", "flatten") in g.edges and ("flatten", "fc1") in g.edges


@pytest.mark.parametrize("spec, thresholds, options", [
    ("64-100-10", [10, 8], dict(output_lateral_inhibition=1.0, refractory=2, spsp="official", target_injection=17.5,
                                reg_lambda=10.0, reg_beta=0.04)),
    (*CNN, dict(output_lateral_inhibition=1.0, spsp="official", pool_rule="threshold")),
], ids=["mlp", "cnn"])
def test_round_trip_through_a_file_is_lossless(spec, thresholds, options, tmp_path):
    torch.manual_seed(0)
    net = SpikingNetwork(spec, thresholds, **options)
    back = import_nir(_round_trip(export_nir(net), tmp_path))
    assert back.init_kwargs == net.init_kwargs
    for p, q in zip(net.parameters(), back.parameters(), strict=True):
        assert torch.equal(p, q)
    for a, b in zip(net.layers.values(), back.layers.values()):
        assert (a.threshold, a.threshold_eps, a.refractory, a.tau_m, a.tau_s) == \
               (b.threshold, b.threshold_eps, b.refractory, b.tau_m, b.tau_s)
    x = _spikes(net)
    with torch.no_grad():
        ours, theirs = net(x, return_all=True), back(x, return_all=True)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours) and sum(v.sum() for v in ours.values()) > 0


def test_round_trip_keeps_the_learning_rule():
    torch.manual_seed(0)
    net = SpikingNetwork("64-100-10", [10, 8], output_lateral_inhibition=1.0, spsp="official", target_injection=17.5)
    back = import_nir(export_nir(net))
    x, y = _spikes(net, T=120, B=4, p=0.2), torch.tensor([0, 1, 2, 3])
    loss = SpikeCountLoss(17.5, 2.5, 2.5)
    for model in (net, back):
        loss(model(x, target=y).sum(0), y).backward()
    for p, q in zip(net.parameters(), back.parameters()):
        assert p.grad is not None and torch.equal(p.grad, q.grad)


def _euler_cuba(x, w, tau_syn, tau_mem, r, w_in, v_th, dt):
    """Reference forward-Euler CubaLIF (NIR's equations, reset to 0), input applied in its own step."""
    I = np.zeros(w.shape[0])
    v = np.zeros(w.shape[0])
    out = np.zeros((len(x), w.shape[0]))
    for t in range(len(x)):
        I = I + dt / tau_syn * (-I + w_in * (w @ x[t]))
        v = v + dt / tau_mem * (-v + r * I)
        out[t] = v > v_th
        v[out[t] > 0] = 0.0
    return out


def test_import_of_a_graph_from_elsewhere_matches_nir_semantics():
    """No hm2bp metadata, other units (r = 1, w_in = 1): the threshold maps to nu = v_th tau_m / (r w_in)."""
    rng = np.random.default_rng(0)
    w = rng.uniform(-1, 1, (7, 20))
    n = lambda v: np.full(7, v)  # noqa: E731
    dt, tau_syn, tau_mem, v_th = 1e-3, 4e-3, 3.2e-2, 0.05
    graph = nir.NIRGraph.from_list(nir.Affine(weight=w, bias=np.zeros(7)), nir.CubaLIF(
        tau_syn=n(tau_syn), tau_mem=n(tau_mem), r=n(1.0), v_leak=n(0.0), v_threshold=n(v_th), w_in=n(1.0)))
    graph.metadata = {"dt": dt}
    net = import_nir(graph).double()
    layer = net.layers["output"]
    assert (layer.tau_s, layer.tau_m, layer.refractory) == (4.0, 32.0, 0)
    assert layer.threshold == pytest.approx(v_th * 32.0 / (1.0 * 1.0))
    x = (rng.random((150, 20)) < 0.3).astype(np.float64)
    ref = _euler_cuba(x, w, tau_syn, tau_mem, 1.0, 1.0, v_th, dt)
    with torch.no_grad():
        ours = net(torch.from_numpy(x)[:, None]).squeeze(1).numpy()
    assert ref.sum() > 10
    np.testing.assert_array_equal(ours[1:], ref[:-1])  # hm2bp delivers input one step later


def test_a_graph_hm2bp_cannot_hold_is_one_clear_error():
    n = lambda v: np.full(3, v)  # noqa: E731
    leaky = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((3, 2)), bias=np.zeros(3)), nir.CubaLIF(
        tau_syn=n(8e-4), tau_mem=n(6.4e-3), r=n(64.0), v_leak=n(0.5), v_threshold=n(1.0), w_in=n(8.0)))
    with pytest.raises(ValueError, match="cubalif.*v_leak must be 0"):
        import_nir(leaky)
    other = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((3, 2)), bias=np.zeros(3)),
                                   nir.LIF(tau=n(1e-3), r=n(1.0), v_leak=n(0.0), v_threshold=n(1.0)))
    with pytest.raises(ValueError, match="must feed one CubaLIF"):
        import_nir(other)
    with pytest.raises(TypeError, match="nir.NIRGraph"):
        import_nir({"nodes": {}})


def test_network_arguments_are_plain_json():
    g = export_nir(SpikingNetwork(*CNN))
    assert json.loads(g.metadata["network"])["spec"] == CNN[0]
