"""Run an exported graph in SpikingJelly 2.0.0 (``pip install --no-deps spikingjelly==2.0.0 loguru``;
``make venv`` does it).

The model is SpikingJelly's own importer,
``spikingjelly.activation_based.nir_exchange.import_from_nir(graph, dt=1e-4, step_mode="s")``
(``dt``: the graph's ``dt`` metadata, hm2bp's step). It accepts a ``CubaLIF`` only when
``w_in = tau_syn/dt`` and ``r = tau_mem/dt`` (hm2bp's export: ``tau_s`` and ``tau_m``) and then steps
``CUBALIFNode`` as ``I <- (1 - dt/tau_syn) I + x``, ``v <- (1 - dt/tau_mem) v + I``, spike if
``v > v_threshold``, then ``v = 0``: hm2bp's update (docs/interop.md). The graph is wired by
``nirtorch.nir_to_torch`` (recurrent edges get the previous step's output, so lateral inhibition runs;
``SumPool2d`` is NIRTorch's sum pooling). The clock is aligned as in :mod:`hm2bp.nir.norse`
(:func:`hm2bp.nir.stepping.run_on_hm2bp_clock`).
"""
from __future__ import annotations

import nir
import torch
from torch import Tensor

from hm2bp.nir.cuba import DT
from hm2bp.nir.stepping import graph_dt, run_on_hm2bp_clock

INSTALL = 'pip install --no-deps spikingjelly==2.0.0 "loguru>=0.7,<1"'


def build(graph: nir.NIRGraph) -> torch.nn.Module:
    """SpikingJelly's single-step model of ``graph`` (``import_from_nir(graph, dt=<the graph's dt>)``)."""
    try:
        from spikingjelly.activation_based.nir_exchange import import_from_nir
    except ImportError as err:  # optional dependency
        raise ImportError(f"running a graph in SpikingJelly needs spikingjelly==2.0.0: {INSTALL} (without "
                          "--no-deps, its declared torchvision and torchaudio would replace torch; the NIR "
                          "importer needs neither)") from err
    return import_from_nir(graph, dt=graph_dt(graph, DT), step_mode="s")


def run_spikingjelly(graph: nir.NIRGraph, spikes: Tensor) -> dict[str, Tensor]:
    """Simulate ``graph`` in SpikingJelly on ``spikes`` ``[T, B, *input]`` (0/1).

    Returns ``{hm2bp layer name: float spikes [T, B, ...]}`` on hm2bp's clock (module docstring).
    """
    model = build(graph)
    modules = dict(model.named_modules())
    neurons = {k: modules[k.replace(".", "_")] for k, n in graph.nodes.items()
               if isinstance(n, nir.CubaLIF) and k.replace(".", "_") in modules}
    return run_on_hm2bp_clock(model, graph, spikes, neurons)
