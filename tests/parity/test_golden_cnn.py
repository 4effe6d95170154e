"""Golden parity of the spiking CNN with the official program (docs/algorithm.md, "Golden files of the authors' program").

Test net (data README): T = 450, 28x28 -> 5C5 (nu 5) -> P2 (nu 2) -> 3C5 (nu 5) -> P2 (nu 2)
-> 100 (nu 10) -> 10 (nu 5), output inhibition -1, label 5, float64.

* Forward: every layer's spikes match bit-exactly, chained from the input, for the train pass
  (initial weights) and the test pass (``*_trained`` weights), in both golden variants. The
  softmax variant's output layer is a spiking LIF layer in the forward pass too.
* One update (``spikes``/``weights`` variant only; the softmax variant trains its output with a
  softmax loss we do not model): official conventions, lambda 10, beta 0.4 on every trained layer,
  pooling 1/p^2, target injection, effect ratio; the first Adam step must reproduce every sign:
  ``|W_pred - W_trained| <= 0.25 lr``.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from hm2bp import SpikeCountLoss, SpikingNetwork
from tests.parity.golden import read_conv_kernels, read_dense_dump, read_fc_weights, read_spike_list

T = 450
LABEL = 5
LR = 1e-3
# layer name -> (weight file stem, shape)
WEIGHTS = {
    "conv1": ("conv1_info", (5, 1, 5)),
    "conv2": ("conv2_info", (3, 5, 5)),
    "fc1": ("hidden_info", (100, 48)),
    "output": ("output_info", (10, 100)),
}
# layer name -> (spike folder, file, channels, dim) for dense dumps, or (folder, file, neurons) for lists
SPIKES = {
    "conv1": ("conv1", "conv1_1.dat", 5, 24),
    "pool1": ("pool1", "pool1_1.dat", 5, 12),
    "conv2": ("conv2", "conv2_1.dat", 3, 8),
    "pool2": ("pool2", "pool2_1.dat", 3, 4),
    "fc1": ("hidden", "hidden.dat", 100),
    "output": ("output", "output.dat", 10),
}


def _network(**overrides) -> SpikingNetwork:
    opts = dict(
        output_lateral_inhibition=1.0,
        spsp="official",
        effect_ratio=True,
        side_effect=True,
        target_injection=35.0,
        reg_lambda=10.0,
        reg_beta=0.4,
        reg_limit=8.0,
        pool_rule="official",
    )
    opts.update(overrides)
    return SpikingNetwork("28x28-5C5-P2-3C5-P2-100-10", [5, 2, 5, 2, 10, 5], **opts).double()


def _read_weights(folder, name, trained: bool) -> torch.Tensor:
    stem, shape = WEIGHTS[name]
    path = folder / f"{stem}{'_trained' if trained else ''}.txt"
    return read_conv_kernels(path, *shape) if len(shape) == 3 else read_fc_weights(path, *shape)


def _load(net, folder, trained: bool) -> None:
    with torch.no_grad():
        for name in WEIGHTS:
            net.layers[name].weight.copy_(_read_weights(folder, name, trained))


def _input(golden_dir) -> torch.Tensor:
    spikes = read_spike_list(golden_dir / "test_inputs/cnn_mnist/input_spikes_0_5.dat", 784, T)
    return spikes.view(T, 1, 28, 28)  # [T, B=1, 28, 28], row-major pixels


def _golden_spikes(folder, name, phase) -> torch.Tensor:
    entry = SPIKES[name]
    path = folder / entry[0] / phase / entry[1]
    if len(entry) == 4:
        return read_dense_dump(path, entry[2], T, entry[3])  # [T, C, dim, dim]
    return read_spike_list(path, entry[2], T)  # [T, N]


@pytest.mark.parametrize("variant", ["", "_softmax"], ids=["spiking", "softmax"])
@pytest.mark.parametrize("phase", ["train", "test"])
def test_cnn_forward_chain_is_exact(golden_dir, variant, phase):
    root = golden_dir / "cnn_mnist"
    net = _network()
    _load(net, root / f"weights{variant}", trained=phase == "test")
    with torch.no_grad():
        outs = net(_input(golden_dir), return_all=True)
    for name in SPIKES:
        ref = _golden_spikes(root / f"spikes{variant}", name, phase)
        got = outs[name][:, 0].to(torch.uint8)
        bad = int((got != ref).sum())
        assert bad == 0, f"{variant or 'spiking'} {phase} {name}: {bad} mismatched bins ({int(got.sum())} vs {int(ref.sum())} spikes)"
        assert got.sum() > 0 or name == "output"


def _one_adam_step(golden_dir, conv_reg: bool = True, **overrides) -> dict[str, torch.Tensor]:
    root = golden_dir / "cnn_mnist"
    net = _network(**overrides)
    if not conv_reg:
        for name in ("conv1", "conv2"):
            net.layers[name].rule = dataclasses.replace(net.layers[name].rule, reg_lambda=0.0)
    _load(net, root / "weights", trained=False)
    target = torch.tensor([LABEL])
    out = net(_input(golden_dir), target=target)
    assert int(out.sum()) == 0  # all silent: the label neuron gets 37 injected spikes at 12, 24, ..., 444
    SpikeCountLoss(35.0, 5.0, 5.0)(out.sum(0), target).backward()
    torch.optim.Adam(net.parameters(), lr=LR).step()  # first step: -lr * sign(g)
    return {name: (net.layers[name].weight.detach() - _read_weights(root / "weights", name, trained=True)).abs()
            for name in WEIGHTS}


def test_cnn_one_adam_step_reproduces_every_sign(golden_dir):
    diffs = _one_adam_step(golden_dir)
    for name, d in diffs.items():
        bad = int((d > 0.25 * LR).sum())
        assert bad == 0, f"{name}: {bad} of {d.numel()} weights moved the wrong way (max |dW| {float(d.max()):.3g})"


@pytest.mark.slow
def test_cnn_adam_signs_reject_the_variants_the_data_rule_out(golden_dir):
    """1/nu_pool in pooling, no side effect, or no regulariser on the kernels each flip conv2 signs."""
    for overrides in (dict(pool_rule="threshold"), dict(side_effect=False), dict(conv_reg=False)):
        diffs = _one_adam_step(golden_dir, **overrides)
        assert int((diffs["conv2"] > 0.25 * LR).sum()) > 0, overrides
