"""Two more simulators agree: exported hm2bp networks run in Norse 1.1.0 and SpikingJelly 2.0.0 spike for spike.

Each graph goes through the simulator's own importer, ``norse.torch.utils.import_nir.from_nir(graph,
dt=1e-4)`` and ``spikingjelly.activation_based.nir_exchange.import_from_nir(graph, dt=1e-4)``
(``hm2bp.nir.norse.run_norse``, ``hm2bp.nir.spikingjelly.run_spikingjelly``: input shifted one step,
layer ``k`` read ``k - 1`` steps later), and every (t, sample, neuron) bin of every layer is compared
with hm2bp's. Both are installed by ``make venv`` with ``pip install --no-deps``: their declared
torchvision (and torchaudio) would replace the pinned torch.
"""
from __future__ import annotations

import importlib
import re
from importlib.metadata import version

import pytest
import torch

from hm2bp import SpikingNetwork
from hm2bp.nir import export_nir, import_nir
from tests.helpers.digits import digits_network
from tests.helpers.nir_runs import forward_all, mismatches, refractory_runs
from tests.helpers.paths import REPO

# simulator -> (distribution, pinned version, module with run_<simulator>)
SIMULATORS = {"norse": ("norse", "1.1.0", "hm2bp.nir.norse"),
              "spikingjelly": ("spikingjelly", "2.0.0", "hm2bp.nir.spikingjelly")}


@pytest.fixture(params=sorted(SIMULATORS))
def run(request):
    """``run(graph, spikes) -> {layer: spikes}`` of one simulator (skipped when it is not installed)."""
    dist, _, module = SIMULATORS[request.param]
    pytest.importorskip(dist, reason=f"{dist} is installed by `make venv` (pip install --no-deps)")
    return getattr(importlib.import_module(module), f"run_{request.param}")


_mismatches, _forward = mismatches, forward_all


@pytest.mark.parametrize("name", sorted(SIMULATORS))
def test_the_makefile_installs_the_pinned_simulator_without_its_dependencies(name):
    """pyproject extras cannot say --no-deps; the declared torchvision would replace torch."""
    dist, pinned, _ = SIMULATORS[name]
    assert re.search(rf"pip install -q --no-deps [^\n]*\b{dist}=={re.escape(pinned)}\b", (REPO / "Makefile").read_text())
    pytest.importorskip(dist)
    assert version(dist) == pinned
    assert torch.__version__.split("+")[0] == "2.13.0"


def test_a_seeded_64_40_10_network_is_exact(run):
    torch.manual_seed(0)
    net = SpikingNetwork("64-40-10", [3, 4], refractory=0)
    x = (torch.rand(100, 12, 64) < 0.2).to(torch.uint8)
    ours = _forward(net, x)
    assert ours["fc1"].sum() > 1000 and ours["output"].sum() > 100
    assert _mismatches(ours, run(export_nir(net), x)) == {"fc1": 0, "output": 0}  # 48,000 + 12,000 bins


def test_trained_digits_network_is_exact(run, trained_digits_state, digits_inputs):
    x, labels = digits_inputs
    net = digits_network()
    net.load_state_dict(trained_digits_state)
    ours = _forward(net, x)
    theirs = run(export_nir(net), x)
    assert _mismatches(ours, theirs) == {"fc1": 0, "output": 0}  # 640,000 + 64,000 bins
    assert ours["fc1"].sum() > 1000 and ours["output"].sum() > 100
    preds = ours["output"].sum(0).argmax(-1)
    assert torch.equal(preds, theirs["output"].sum(0).argmax(-1))
    assert (preds == labels).float().mean() > 0.5


def test_lateral_inhibition_is_exact_in_the_simulator_s_own_importer(run, trained_digits_state, digits_inputs):
    """Unlike snnTorch's import_from_nir, both importers add the recurrent Linear from the previous step."""
    x, _ = digits_inputs
    net = digits_network(lateral=1.0)
    net.load_state_dict(trained_digits_state)
    assert _mismatches(_forward(net, x), run(export_nir(net), x)) == {"fc1": 0, "output": 0}


def test_the_file_round_trip_is_exact(run, trained_digits_state, digits_inputs, tmp_path):
    import nir

    x, _ = digits_inputs
    net = digits_network(lateral=1.0)
    net.load_state_dict(trained_digits_state)
    nir.write(tmp_path / "digits.nir", export_nir(net))
    graph = nir.read(tmp_path / "digits.nir")
    theirs = run(graph, x)
    assert _mismatches(_forward(net, x), theirs) == {"fc1": 0, "output": 0}
    assert _mismatches(_forward(import_nir(graph), x), theirs) == {"fc1": 0, "output": 0}


def test_refractory_is_what_the_simulator_loses(run, trained_digits_state, digits_inputs):
    x, _ = digits_inputs
    at_zero, at_two = refractory_runs(run, trained_digits_state, x)
    assert at_zero == {"fc1": 0, "output": 0}
    assert at_two["fc1"] > 0


def test_a_spiking_cnn_is_exact(run, digits_inputs):
    """Conv2d, SumPool2d and Flatten (Norse: batch kept by hm2bp.nir.norse.build), lateral inhibition."""
    torch.manual_seed(1)
    x, _ = digits_inputs
    net = SpikingNetwork("8x8-6C3-P2-40-10", [3, 1, 6, 4], refractory=0, output_lateral_inhibition=1.0,
                         conv_init=1.0)
    ours = _forward(net, x)
    assert all(v.sum() > 0 for v in ours.values())
    assert _mismatches(ours, run(export_nir(net), x)) == {"conv1": 0, "pool1": 0, "fc1": 0, "output": 0}
