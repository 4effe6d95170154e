"""Run an exported graph in snnTorch (``pip install -e .[dev]``; snnTorch 1.0.0 with NIRTorch).

Two ways to build the snnTorch model from the graph:

* ``"import_from_nir"``: snnTorch's own ``snntorch.import_nir.import_from_nir``. Exact for
  feed-forward graphs. It cannot run hm2bp's lateral inhibition: it rewrites a ``CubaLIF <->
  Linear`` loop into a subgraph whose *input* edge enters the recurrent ``Linear``, so the layer
  receives ``W_rec (x_t + s_{t-1})`` instead of ``x_t + W_rec s_{t-1}`` (docs/interop.md).
* ``"nirtorch"``: snnTorch's neuron and weight modules (its importer's node mapping), wired by
  NIRTorch's own graph interpreter (``nirtorch.nir_to_torch``), which feeds a recurrent edge the
  previous step's spikes. Exact with lateral inhibition too.

:func:`run_snntorch` presents ``x[t-1]`` at step ``t`` (hm2bp's one-step delivery) and returns
every spiking layer's trains on hm2bp's clock: an importer applies a layer's input in the step it
arrives, so hm2bp's layer ``k`` (1-based) fires at ``t`` where the importer's fires at ``t - (k-1)``;
the importer's last ``k - 1`` steps fall beyond hm2bp's ``T`` and are dropped.
"""
from __future__ import annotations

import copy

import nir
import torch
from torch import Tensor

from hm2bp.nir.stepping import lif_order as _lif_order
from hm2bp.nir.stepping import run_on_hm2bp_clock

METHODS = ("import_from_nir", "nirtorch")


def build(graph: nir.NIRGraph, method: str = "import_from_nir") -> torch.nn.Module:
    """The snnTorch model of ``graph`` (``method`` as in the module docstring)."""
    try:
        import nirtorch
        import snntorch  # noqa: F401
        from snntorch.import_nir import _nir_to_snntorch_module, import_from_nir
    except ImportError as err:  # optional dependency
        raise ImportError("running a graph in snnTorch needs snntorch==1.0.0 and nirtorch: pip install -e .[dev]") from err
    if method == "import_from_nir":
        return import_from_nir(copy.deepcopy(graph))  # it rewrites the graph it is given
    if method == "nirtorch":
        node_map = {t: (lambda n: _nir_to_snntorch_module(n, init_hidden=True))
                    for t in (nir.Affine, nir.Linear, nir.Conv2d, nir.CubaLIF)}
        # NIR's Flatten dims exclude the batch; the modules here see [B, ...]
        node_map[nir.Flatten] = lambda n: torch.nn.Flatten(int(n.start_dim) + 1, int(n.end_dim))
        return nirtorch.nir_to_torch(graph, node_map)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def run_snntorch(graph: nir.NIRGraph, spikes: Tensor, method: str = "import_from_nir") -> dict[str, Tensor]:
    """Simulate ``graph`` in snnTorch on ``spikes`` ``[T, B, *input]`` (0/1).

    Returns ``{hm2bp layer name: float spikes [T, B, ...]}`` on hm2bp's clock (module docstring).
    """
    import snntorch as snn

    model = build(graph, method)
    lifs = _lif_order(graph)
    modules = {}
    for name, module in model.named_modules():
        if isinstance(module, (snn.Synaptic, snn.RSynaptic)):
            key = name.split(".")[-1]
            modules[key] = module
    missing = [k for k in lifs if k.replace(".", "_") not in modules]
    if missing:
        raise RuntimeError(f"snnTorch model has no neuron module for {missing} (found {sorted(modules)})")
    for module in modules.values():  # fresh state: snnTorch keeps it on the module between calls
        module.reset_hidden() if hasattr(module, "reset_hidden") else None
        for attr in ("syn", "mem", "spk"):
            if hasattr(module, attr):
                setattr(module, attr, torch.zeros(0))
    return run_on_hm2bp_clock(model, graph, spikes, {k: modules[k.replace(".", "_")] for k in lifs}, step=_snntorch_step)


def _snntorch_step(model: torch.nn.Module, x: Tensor, state):
    """One snnTorch step: ``import_from_nir`` models take the input only, NIRTorch's take and return a state."""
    out = model(x) if state is None else model(x, state)
    return out[1] if isinstance(out, tuple) else None
