"""Run an exported graph in Norse 1.1.0 (``pip install --no-deps norse==1.1.0``; ``make venv`` does it).

The model is Norse's own importer, ``norse.torch.utils.import_nir.from_nir(graph, dt=1e-4)``
(``dt``: the graph's ``dt`` metadata, hm2bp's step). Its ``CubaLIF`` is a box synapse followed by a
box LIF neuron, ``I <- I + dt/tau_syn (w_in x - I)``, ``v <- v + dt/tau_mem (r I - v)``, spike if
``v > v_threshold``, then ``v = 0``: with hm2bp's ``w_in = tau_s``, ``r = tau_m`` the same updates as
hm2bp's (docs/interop.md), written another way. Lateral inhibition (a recurrent ``Linear`` on a
``CubaLIF``) runs through NIRTorch's graph executor, which feeds a recurrent edge the previous step's
spikes, as hm2bp does.

Two things differ from a plain ``from_nir`` run, both done here:

* **Clock** (:func:`hm2bp.nir.stepping.run_on_hm2bp_clock`): ``x[t-1]`` is presented at step ``t``
  (hm2bp's one-step delivery), and layer ``k`` (1-based) is read ``k - 1`` steps later.
* **Flatten.** Norse maps NIR's ``Flatten(start_dim=0)`` to ``torch.nn.Flatten(0, -1)``, which also
  flattens the batch (NIR's dims exclude it); :func:`build` shifts the dims by one, so a spiking CNN
  runs too.
"""
from __future__ import annotations

import warnings

import nir
import torch
from torch import Tensor

from hm2bp.nir.cuba import DT
from hm2bp.nir.stepping import graph_dt, run_on_hm2bp_clock

INSTALL = "pip install --no-deps norse==1.1.0 h5py"


def build(graph: nir.NIRGraph) -> torch.nn.Module:
    """Norse's model of ``graph``: ``from_nir(graph, dt=<the graph's dt>)`` with batch-safe flattening."""
    try:
        from norse.torch.utils.import_nir import from_nir
    except ImportError as err:  # optional dependency
        raise ImportError(f"running a graph in Norse needs norse==1.1.0: {INSTALL} (without --no-deps, its "
                          "declared torchvision would replace torch; Norse's NIR importer does not use it)") from err
    with warnings.catch_warnings():  # Norse 1.1.0 calls nirtorch.load, which NIRTorch 2.6 marks deprecated
        warnings.filterwarnings("ignore", message="nirtorch.load is being deprecated", category=DeprecationWarning)
        model = from_nir(graph, dt=graph_dt(graph, DT))
    flatten = {k.replace(".", "_"): n for k, n in graph.nodes.items() if isinstance(n, nir.Flatten)}
    for name, module in model.named_modules():
        node = flatten.get(name.split(".")[-1])
        if node is not None and isinstance(module, torch.nn.Flatten):  # NIR's dims exclude the batch
            end = int(node.end_dim)
            module.start_dim, module.end_dim = int(node.start_dim) + 1, end if end < 0 else end + 1
    return model


def run_norse(graph: nir.NIRGraph, spikes: Tensor) -> dict[str, Tensor]:
    """Simulate ``graph`` in Norse on ``spikes`` ``[T, B, *input]`` (0/1).

    Returns ``{hm2bp layer name: float spikes [T, B, ...]}`` on hm2bp's clock (module docstring).
    """
    from norse.torch.utils.import_nir import CubaLIF

    model = build(graph)
    modules = {name.split(".")[-1]: m for name, m in model.named_modules() if isinstance(m, CubaLIF)}
    neurons = {k: modules[k.replace(".", "_")] for k, n in graph.nodes.items()
               if isinstance(n, nir.CubaLIF) and k.replace(".", "_") in modules}
    return run_on_hm2bp_clock(model, graph, spikes, neurons)
