"""Golden parity with the official program (docs/algorithm.md, "Golden files of the authors' program"): FC layers, forward and one update.

Forward spikes must match bit-exactly (float64); the TI46 one-step SGD update must match the
trained weights to 3e-6 (print precision is 1e-6); the first Adam step on the MNIST output layer
must have every sign right (|W_pred - W_trained| <= 0.25 lr).
"""
from __future__ import annotations

import pytest
import torch

from hm2bp import SpikeCountLoss, SpikingLinear
from hm2bp.functional import HM2BPRule, LIFParams
from tests.parity.golden import read_fc_weights, read_spike_list

OFFICIAL = dict(spsp="official", tau_m=64.0, tau_s=8.0, refractory=2, target_injection=None)


def _layer(n_in, n_out, threshold, weight, **kw) -> SpikingLinear:
    opts = {**OFFICIAL, **kw}
    neuron = LIFParams(threshold, psp=opts.pop("spsp"), **{k: opts.pop(k) for k in ("tau_m", "tau_s", "refractory")})
    opts["lateral_factor"] = opts.get("lateral_factor", True) and opts.get("lateral_inhibition", 0.0) != 0.0
    layer = SpikingLinear(n_in, n_out, neuron, HM2BPRule(**opts)).double()
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def _run(layer, spikes_in, target=None):
    return layer(spikes_in.double().unsqueeze(1), target=target)  # [T, 1, N]


def _assert_same(pred, golden, name):
    pred = pred.squeeze(1).to(torch.uint8)
    bad = (pred != golden).sum().item()
    assert bad == 0, f"{name}: {bad} mismatched (t, neuron) bins ({int(pred.sum())} vs {int(golden.sum())} spikes)"


# ----------------------------------------------------------------------------- TI46 chain
TI = "speech/ti_alpha"
T_TI = 658


def _ti46(golden_dir, trained: bool):
    suffix = "_trained" if trained else ""
    w = golden_dir / TI / "weights"
    res = _layer(78, 135, 20.0, read_fc_weights(w / "r_weights_info.txt", 135, 78))
    res.set_recurrent(read_fc_weights(w / "r_weights_recurrent_info.txt", 135, 135))
    hid = _layer(135, 64, 20.0, read_fc_weights(w / f"h_weights_info{suffix}.txt", 64, 135),
                 effect_ratio=False, lateral_factor=False)
    out = _layer(64, 26, 5.0, read_fc_weights(w / f"o_weights_info{suffix}.txt", 26, 64),
                 effect_ratio=False, lateral_factor=False, target_injection=35.0)
    return res, hid, out


def _ti46_spikes(golden_dir, layer, n, phase=None):
    s = golden_dir / TI / "spikes"
    files = {
        "input": s / "Input_Response/0/input_spikes_0_0.dat",
        "reservoir": s / "Reservoir_Response/0/reservoir_spikes_0_0.dat",
        "hidden": s / f"Hidden_Response_Supv/{phase}/0/hidden_0_spikes_0_0.dat",
        "readout": s / f"Readout_Response_Supv/{phase}/0/readout_spikes_0_0.dat",
    }
    return read_spike_list(files[layer], n, T_TI)


@pytest.mark.parametrize("phase", ["train", "test"])
def test_ti46_chain_forward_exact(golden_dir, phase):
    res, hid, out = _ti46(golden_dir, trained=phase == "test")
    x = _ti46_spikes(golden_dir, "input", 78)
    with torch.no_grad():
        r = _run(res, x)
        h = hid(r)
        o = out(h)
    _assert_same(r, _ti46_spikes(golden_dir, "reservoir", 135), "reservoir")
    _assert_same(h, _ti46_spikes(golden_dir, "hidden", 64, phase), f"hidden ({phase})")
    _assert_same(o, _ti46_spikes(golden_dir, "readout", 26, phase), f"readout ({phase})")


def test_ti46_one_step_sgd_matches_trained_weights(golden_dir):
    res, hid, out = _ti46(golden_dir, trained=False)
    x = _ti46_spikes(golden_dir, "input", 78)
    target = torch.tensor([0])
    with torch.no_grad():
        r = _run(res, x)
    h = hid(r)
    o = out(h, target=target)
    assert o.sum().item() == _ti46_spikes(golden_dir, "readout", 26, "train").sum().item()
    loss = SpikeCountLoss(35, 5, 5)(o.sum(0), target)
    loss.backward()
    opt = torch.optim.SGD([hid.weight, out.weight], lr=1e-5, momentum=0.0)
    opt.step()
    w = golden_dir / TI / "weights"
    for layer, name, shape in ((hid, "h", (64, 135)), (out, "o", (26, 64))):
        expected = read_fc_weights(w / f"{name}_weights_info_trained.txt", *shape)
        err = (layer.weight.detach() - expected).abs().max().item()
        assert err < 3e-6, f"{name} weights after one SGD step differ by {err:.3g}"


def test_ti46_sgd_rejects_exact_convention(golden_dir):
    """The parity test can fail: the exact discrete S-PSP is measurably different (SGD error ~5e-5)."""
    res, hid, out = _ti46(golden_dir, trained=False)
    out_exact = _layer(64, 26, 5.0, out.weight.detach(), effect_ratio=False, target_injection=35.0, spsp="exact")
    x = _ti46_spikes(golden_dir, "input", 78)
    with torch.no_grad():
        h = hid(_run(res, x))
    o = out_exact(h, target=torch.tensor([0]))
    SpikeCountLoss(35, 5, 5)(o.sum(0), torch.tensor([0])).backward()
    new = out_exact.weight.detach() - 1e-5 * out_exact.weight.grad
    expected = read_fc_weights(golden_dir / TI / "weights/o_weights_info_trained.txt", 26, 64)
    assert (new - expected).abs().max().item() > 1e-5


# ----------------------------------------------------------------------------- N-MNIST reservoir net output
def test_nmnist_reservoir_output_sgd(golden_dir):
    base = golden_dir / "nmnist"
    T = 1544
    hidden = read_spike_list(base / "spikes/Hidden_Response_Supv/train/0/hidden_0_spikes_0_0.dat", 400, T)
    out = _layer(400, 10, 5.0, read_fc_weights(base / "weights/o_weights_info.txt", 10, 400),
                 effect_ratio=False, lateral_factor=False, target_injection=35.0)
    o = out(hidden.double().unsqueeze(1), target=torch.tensor([0]))
    _assert_same(o.detach(), read_spike_list(base / "spikes/Readout_Response_Supv/train/0/readout_spikes_0_0.dat", 10, T), "readout")
    SpikeCountLoss(35, 5, 5)(o.sum(0), torch.tensor([0])).backward()
    new = out.weight.detach() - 1e-5 * out.weight.grad
    expected = read_fc_weights(base / "weights/o_weights_info_trained.txt", 10, 400)
    err = (new - expected).abs().max().item()
    assert err < 3e-6, f"N-MNIST output weights after one SGD step differ by {err:.3g}"


# ----------------------------------------------------------------------------- MNIST output layer
T_MNIST = 450


def _mnist_output(golden_dir, trained: bool):
    suffix = "_trained" if trained else ""
    w = read_fc_weights(golden_dir / f"mnist/weights/o_weights_info{suffix}.txt", 10, 400)
    return _layer(400, 10, 5.0, w, lateral_inhibition=1.0, target_injection=35.0,
                  reg_lambda=10.0, reg_beta=0.04, reg_limit=8.0)


def _mnist_spikes(golden_dir, kind, phase):
    s = golden_dir / "mnist/spikes"
    if kind == "hidden":
        return read_spike_list(s / f"Hidden_Response_Supv/{phase}/5/hidden_0_spikes_0_5.dat", 400, T_MNIST)
    return read_spike_list(s / f"Readout_Response_Supv/{phase}/5/readout_spikes_0_5.dat", 10, T_MNIST)


def test_mnist_lateral_matrix_is_minus_one_off_diagonal(golden_dir):
    lat = read_fc_weights(golden_dir / "mnist/weights/o_weight_recurrent_info.txt", 10, 10)
    layer = SpikingLinear(400, 10, 5.0, HM2BPRule(lateral_inhibition=1.0))
    assert torch.equal(layer.lateral.double(), lat)


@pytest.mark.parametrize("phase", ["train", "test"])
def test_mnist_output_forward_exact(golden_dir, phase):
    layer = _mnist_output(golden_dir, trained=phase == "test")
    with torch.no_grad():
        o = _run(layer, _mnist_spikes(golden_dir, "hidden", phase))
    _assert_same(o, _mnist_spikes(golden_dir, "readout", phase), f"readout ({phase})")


def test_mnist_output_adam_signs(golden_dir):
    layer = _mnist_output(golden_dir, trained=False)
    target = torch.tensor([5])
    o = _run(layer, _mnist_spikes(golden_dir, "hidden", "train"), target=target)
    assert o.sum(0).squeeze().tolist() == [3, 4, 0, 0, 0, 0, 0, 0, 28, 0]
    SpikeCountLoss(35, 5, 5)(o.sum(0), target).backward()
    lr = 1e-3
    torch.optim.Adam([layer.weight], lr=lr, betas=(0.9, 0.999), eps=1e-8).step()
    expected = read_fc_weights(golden_dir / "mnist/weights/o_weights_info_trained.txt", 10, 400)
    diff = (layer.weight.detach() - expected).abs()
    wrong = int((diff > 0.25 * lr).sum())
    assert wrong == 0, f"{wrong} of {diff.numel()} Adam steps have the wrong sign (max diff {diff.max():.3g})"
