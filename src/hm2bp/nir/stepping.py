"""Step an imported NIR graph on hm2bp's clock (shared by :mod:`hm2bp.nir.norse` and :mod:`hm2bp.nir.spikingjelly`).

hm2bp delivers a layer's input spikes one step later (``x[t] = W s_in[t-1]``); NIR importers apply an
input in the step it arrives. :func:`run_on_hm2bp_clock` presents ``x[t-1]`` at step ``t``, so the
importer's first spiking layer fires exactly when hm2bp's does and its layer ``k`` (1-based) ``k - 1``
steps earlier; it reads layer ``k`` ``k - 1`` steps later (the importer's last ``k - 1`` steps fall
beyond hm2bp's ``T``). :func:`hm2bp.nir.snntorch.run_snntorch` uses it too, with its own step (snnTorch's
modules keep their state themselves).
"""
from __future__ import annotations

import nir
import torch
from torch import Tensor


def lif_order(graph: nir.NIRGraph) -> list[str]:
    """Names of the graph's ``CubaLIF`` nodes from input to output, following the edges (a graph read
    from a file lists its nodes alphabetically)."""
    succ: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(str(a), []).append(str(b))
    frontier = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    seen, order = set(frontier), []
    while frontier:
        node = frontier.pop(0)
        if isinstance(graph.nodes[node], nir.CubaLIF):
            order.append(node)
        for nxt in succ.get(node, []):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return order


def graph_dt(graph: nir.NIRGraph, default: float) -> float:
    """The graph's ``dt`` metadata (hm2bp's step in seconds), or ``default``."""
    dt = (graph.metadata or {}).get("dt", default)
    return float(dt.item() if hasattr(dt, "item") else dt)


def stateful_step(model: torch.nn.Module, x: Tensor, state):
    """One step of an importer whose model returns ``(out, state)`` and takes ``state=None`` first."""
    return model(x, state)[1]


def run_on_hm2bp_clock(model: torch.nn.Module, graph: nir.NIRGraph, spikes: Tensor,
                       neurons: dict[str, torch.nn.Module], step=stateful_step) -> dict[str, Tensor]:
    """Step ``model`` (``model(x_t, state) -> (out, state)``, ``state=None`` at the start) on ``spikes``
    ``[T, B, *input]`` and record the first output of each module in ``neurons`` (``{CubaLIF node: module}``).
    ``step(model, x_t, state) -> state`` advances the model one step (:func:`stateful_step` by default).

    Returns ``{hm2bp layer name: float spikes [T, B, ...]}`` on hm2bp's clock (module docstring).
    """
    lifs = lif_order(graph)
    missing = [k for k in lifs if k not in neurons]
    if missing:
        raise RuntimeError(f"the imported model has no neuron module for {missing} (found {sorted(neurons)})")
    record: dict[str, list[Tensor]] = {k: [] for k in lifs}
    hooks = [neurons[k].register_forward_hook(
        lambda mod, args, out, k=k: record[k].append((out[0] if isinstance(out, tuple) else out).detach().clone()))
        for k in lifs]
    T, B = spikes.shape[:2]
    shape = [int(v) for v in next(n for n in graph.nodes.values() if isinstance(n, nir.Input)).input_type["input"]]
    x = torch.zeros(T, B, *shape)
    x[1:] = spikes[:-1].reshape(T - 1, B, *shape).float()  # present x[t-1] at step t
    try:
        with torch.no_grad():
            state = None
            for t in range(T):
                state = step(model, x[t], state)
    finally:
        for h in hooks:
            h.remove()
    result = {}
    for k_index, k in enumerate(lifs):
        trains = torch.stack(record[k]).float()  # [T, B, ...] on the importer's clock
        aligned = torch.zeros_like(trains)
        aligned[k_index:] = trains[: T - k_index]
        name = (graph.nodes[k].metadata or {}).get("hm2bp_layer", k)
        result[str(name.decode() if isinstance(name, bytes) else name)] = aligned
    return result
