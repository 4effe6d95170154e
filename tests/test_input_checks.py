"""The Python API rejects what is not a spike train, labels out of range, wrong or ambiguous layouts,
empty batches and too few steps, each with one clear ``InputError``; ``check_inputs=False`` skips it."""
from __future__ import annotations

import math

import pytest
import torch

from hm2bp import SpikeCountLoss, SpikingConv2d, SpikingLinear, SpikingNetwork, SpikingPool2d
from hm2bp.baselines import BPTTNetwork
from hm2bp.errors import ConfigError, InputError
from hm2bp.functional import LIFParams


def spikes(*shape, p=0.2, seed=0):
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < p).to(torch.uint8)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return SpikingNetwork("16-8-4", thresholds=[1.0, 1.0])


@pytest.mark.parametrize("x, pattern", [
    (torch.full((10, 2, 16), 0.5), r"expects spike trains \(every value 0 or 1\), got values such as 0\.5"),
    (spikes(10, 2, 16) * 2, r"every value 0 or 1\), got values such as 2"),
    (torch.full((10, 2, 16), math.nan), r"got values such as nan"),
    (-spikes(10, 2, 16).to(torch.int64), r"got values such as -1"),
    (spikes(10, 16), r"at least 3 dimensions \[T, B, \.\.\.\], got shape \(10, 16\); for one sample use x\.unsqueeze\(1\)"),
    (spikes(10, 0, 16), r"empty batch, shape \(10, 0, 16\)"),
    (spikes(0, 2, 16), r"T=0 time steps; at least 2 are needed"),
    (spikes(1, 2, 16), r"T=1 time steps; at least 2 are needed"),
    (spikes(10, 2, 15), r"expects time-first inputs \[T, B, 16\], got shape \(10, 2, 15\)"),
    (torch.zeros(10, 2, 16, dtype=torch.complex64), r"expects 0/1 spikes .*got dtype torch\.complex64"),
])
def test_network_rejects_what_is_not_a_spike_train(net, x, pattern):
    with pytest.raises(InputError, match=pattern):
        net(x)


@pytest.mark.parametrize("target, pattern", [
    (torch.tensor([0, 4]), r"label 4 is outside the class range 0\.\.3"),
    (torch.tensor([-1, 0]), r"label -1 is outside the class range 0\.\.3"),
    (torch.tensor([0.0, 1.0]), r"labels must be integer class indices .*got dtype torch\.float32"),
    (torch.tensor([0, 1, 2]), r"labels must have shape \[B\] = \[2\], got \(3,\)"),
    (torch.tensor([[0, 1]]), r"labels must have shape \[B\] = \[2\], got \(1, 2\)"),
])
def test_network_rejects_bad_labels(net, target, pattern):
    with pytest.raises(InputError, match=pattern):
        net(spikes(10, 2, 16), target=target)


def test_image_networks_accept_their_layouts_only():
    torch.manual_seed(0)
    net = SpikingNetwork("8x8-2C3-P2-4", thresholds=[1.0, 1.0, 1.0])
    for shape in ((10, 2, 8, 8), (10, 2, 1, 8, 8), (10, 2, 64)):
        assert net(spikes(*shape)).shape == (10, 2, 4)
    with pytest.raises(InputError, match=r"expects time-first inputs \[T, B, 8x8\], got shape \(10, 2, 4, 16\)"):
        net(spikes(10, 2, 4, 16))  # same number of pixels, other image: ambiguous, refused
    fc = SpikingNetwork("64-8-4", thresholds=[1.0, 1.0])
    assert fc(spikes(10, 2, 8, 8)).shape == (10, 2, 4)  # a vector input takes any image, flattened channel-major


def test_layers_check_their_inputs():
    torch.manual_seed(0)
    with pytest.raises(InputError, match=r"SpikingLinear expects spike trains"):
        SpikingLinear(16, 4, 1.0)(torch.full((10, 2, 16), 0.3))
    with pytest.raises(InputError, match=r"SpikingLinear: label 7 is outside the class range 0\.\.3"):
        SpikingLinear(16, 4, 1.0)(spikes(10, 2, 16), target=torch.tensor([0, 7]))
    with pytest.raises(InputError, match=r"SpikingLinear expects spikes \[T, B, 16\], got \(10, 2, 12\)"):
        SpikingLinear(16, 4, 1.0)(spikes(10, 2, 12))
    with pytest.raises(InputError, match=r"SpikingConv2d expects spike trains"):
        SpikingConv2d(1, 2, 3, 1.0)(torch.full((10, 2, 1, 8, 8), 2.0))
    with pytest.raises(InputError, match=r"SpikingConv2d: empty batch"):
        SpikingConv2d(1, 2, 3, 1.0)(spikes(10, 0, 1, 8, 8))
    with pytest.raises(InputError, match=r"SpikingPool2d: T=1 time steps"):
        SpikingPool2d(2, 1.0)(spikes(1, 2, 1, 8, 8))
    with pytest.raises(InputError, match=r"SpikingPool2d expects time-first spikes with at least 5 dimensions"):
        SpikingPool2d(2, 1.0)(spikes(10, 2, 8, 8))


@pytest.mark.parametrize("counts, target, pattern", [
    (torch.ones(4), torch.tensor([0, 1, 2, 3]), r"expects output spike counts \[B >= 1, classes >= 1\], got \(4,\)"),
    (torch.ones(0, 3), torch.zeros(0, dtype=torch.long), r"got \(0, 3\)"),
    (torch.ones(2, 3, dtype=torch.long), torch.tensor([0, 1]), r"floating-point counts .*torch\.int64"),
    (torch.tensor([[1.0, math.nan, 0.0], [0.0, 1.0, 2.0]]), torch.tensor([0, 1]), r"finite and non-negative"),
    (torch.tensor([[1.0, -1.0, 0.0], [0.0, 1.0, 2.0]]), torch.tensor([0, 1]), r"finite and non-negative"),
    (torch.ones(2, 3), torch.tensor([0, 3]), r"SpikeCountLoss: label 3 is outside the class range 0\.\.2"),
    (torch.ones(2, 3), torch.tensor([0]), r"labels must have shape \[B\] = \[2\]"),
])
def test_loss_rejects_bad_counts_and_labels(counts, target, pattern):
    with pytest.raises(InputError, match=pattern):
        SpikeCountLoss(6, 1, 1)(counts, target)


def test_checks_can_be_turned_off(net):
    """With check_inputs=False nothing is inspected: a rate tensor simply runs (its 0.5s as inputs)."""
    quiet = SpikingNetwork("16-8-4", thresholds=[1.0, 1.0], check_inputs=False)
    assert quiet(torch.full((10, 2, 16), 0.5)).shape == (10, 2, 4)
    loss = SpikeCountLoss(6, 1, 1, check_inputs=False)
    assert torch.isfinite(loss(torch.ones(2, 3), torch.tensor([0, 2])))
    layer = SpikingLinear(16, 4, 1.0, check_inputs=False)
    assert layer(torch.full((10, 2, 16), 0.5)).shape == (10, 2, 4)
    bptt = BPTTNetwork("16-8-4", thresholds=[1.0, 1.0], check_inputs=False)
    assert bptt(torch.full((10, 2, 16), 0.5)).shape == (10, 2, 4)
    with pytest.raises(InputError, match="every value 0 or 1"):
        BPTTNetwork("16-8-4", thresholds=[1.0, 1.0])(torch.full((10, 2, 16), 0.5))


def test_valid_inputs_of_every_dtype_pass(net):
    x = spikes(10, 3, 16)
    ref = net(x)
    for dtype in (torch.bool, torch.int32, torch.float32, torch.float64):
        assert torch.equal(net(x.to(dtype)), ref)


@pytest.mark.parametrize("make, pattern", [
    (lambda: SpikingNetwork("16-8-4", thresholds=[1.0, math.nan]), r"thresholds\[1\]=nan must be a positive finite number"),
    (lambda: SpikingNetwork("16-8-4", thresholds=[1.0]), r"has 2 layers but 1 thresholds were given"),
    (lambda: SpikingNetwork("16-8-4", thresholds=[1.0, 1.0], tau_m=4.0, tau_s=8.0), r"tau_m=4\.0 must exceed tau_s=8\.0"),
    (lambda: SpikingNetwork("16-8-4", thresholds=[1.0, 1.0], target_injection=0), r"target_injection=0 must be > 0"),
    (lambda: SpikingNetwork("16-8-4", thresholds=[1.0, 1.0], reg_lambda=-1), r"reg_lambda=-1 must be >= 0"),
    (lambda: SpikingNetwork("16-8-4", thresholds=[1.0, 1.0], spsp="nope"), r"spsp must be one of"),
    (lambda: SpikingLinear(16, 4, float("inf")), r"SpikingLinear threshold must be a finite number, got inf"),
    (lambda: SpikingLinear(16, 4, LIFParams(1.0, refractory=1.5)), r"refractory must be a whole number"),
    (lambda: SpikingConv2d(1, 2, 3, 1.0, init_range=0), r"init_range=0 must be > 0"),
    (lambda: SpikingPool2d(2, -1.0), r"SpikingPool2d threshold=-1\.0 must be > 0"),
    (lambda: SpikeCountLoss(math.nan, 1, 1), r"desired must be a finite number, got nan"),
    (lambda: SpikeCountLoss(6, -1, 1), r"undesired=-1 must be >= 0"),
])
def test_constructors_range_check_their_values(make, pattern):
    with pytest.raises(ConfigError, match=pattern):
        make()
