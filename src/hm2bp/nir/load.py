"""``import_nir``: a NIR graph -> ``SpikingNetwork`` (the inverse of :func:`hm2bp.nir.export_nir`).

The graph must be a chain ``Input -> [Conv2d | SumPool2d | Affine | Linear] -> CubaLIF -> ...
-> Output`` with at most one ``Flatten`` (conv/pool -> fully connected) and optional recurrent
``Linear`` loops on a ``CubaLIF`` (hm2bp's lateral matrix). A graph hm2bp exported carries its
constructor arguments, thresholds, refractory periods and S-PSP convention in its metadata, so
hm2bp -> NIR -> hm2bp gives the same spikes and the same training rule. A graph from elsewhere
gets the spec, thresholds and time constants from its nodes, refractory 0 (NIR has none) and
hm2bp's defaults for the rule; note that hm2bp delivers each layer's input one step later
(``delay_steps`` in docs/interop.md).
"""
from __future__ import annotations

import json

import nir
import numpy as np
import torch

from hm2bp.functional import LIFParams
from hm2bp.layers import SpikingConv2d, SpikingLinear, SpikingPool2d
from hm2bp.network import SpikingNetwork, parse_spec
from hm2bp.nir.cuba import DT, from_cuba
from hm2bp.nir.export import FORMAT

_SYNAPSES = (nir.Affine, nir.Linear, nir.Conv2d, nir.SumPool2d)


def _as_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _chain(graph: nir.NIRGraph) -> list[tuple[str, str | None, str, str | None]]:
    """``[(layer name, flatten node or None, lif node, recurrent node or None)]`` in order."""
    nodes, edges = graph.nodes, [(_as_str(a), _as_str(b)) for a, b in graph.edges]
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise ValueError(f"NIR graph: import_nir needs exactly one Input node, found {len(inputs)}")
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise ValueError(f"NIR graph: edge ({a!r}, {b!r}) names a node that is not in the graph")
        succ[a].append(b)
    recurrent = {}
    for a, b in edges:  # a CubaLIF <-> Linear loop is a recurrent matrix
        if isinstance(nodes[a], nir.CubaLIF) and isinstance(nodes[b], nir.Linear) and succ[b] == [a]:
            recurrent[a] = b
    chain, node, flatten = [], inputs[0], None
    while True:
        nxt = [b for b in succ[node] if b != recurrent.get(node)]
        if len(nxt) != 1:
            raise ValueError(f"NIR graph: node {node!r} feeds {nxt}; import_nir reads a chain of layers")
        node = nxt[0]
        kind = nodes[node]
        if isinstance(kind, nir.Output):
            break
        if isinstance(kind, nir.Flatten):
            flatten = node
            continue
        if not isinstance(kind, _SYNAPSES):
            raise ValueError(f"NIR graph: node {node!r} is a {type(kind).__name__}; import_nir reads Affine, Linear, "
                             f"Conv2d or SumPool2d followed by CubaLIF (and Flatten)")
        lif = [b for b in succ[node]]
        if len(lif) != 1 or not isinstance(nodes[lif[0]], nir.CubaLIF):
            raise ValueError(f"NIR graph: {type(kind).__name__} node {node!r} must feed one CubaLIF node")
        chain.append((node, flatten, lif[0], recurrent.get(lif[0])))
        flatten, node = None, lif[0]
    if not chain:
        raise ValueError("NIR graph: no layer between Input and Output")
    return chain


def _spec_token(name: str, node: nir.NIRNode, shape: tuple[int, ...]) -> str:
    if isinstance(node, (nir.Affine, nir.Linear)):
        return str(node.weight.shape[0])
    if isinstance(node, nir.Conv2d):
        w = node.weight
        ok = (w.shape[2] == w.shape[3] and tuple(np.atleast_1d(node.stride)) in ((1,), (1, 1))
              and tuple(np.atleast_1d(node.padding)) in ((0,), (0, 0)) and int(node.groups) == 1)
        if not ok:
            raise ValueError(f"NIR graph: Conv2d {name!r} must have a square kernel, stride 1, padding 0, groups 1")
        return f"{w.shape[0]}C{w.shape[2]}"
    k, s = np.atleast_1d(node.kernel_size), np.atleast_1d(node.stride)
    if len(set(k.tolist())) != 1 or not np.array_equal(k, s) or np.any(np.atleast_1d(node.padding)):
        raise ValueError(f"NIR graph: SumPool2d {name!r} must be square with stride = kernel and no padding")
    return f"P{int(k[0])}"


def _config_from_nodes(graph, chain, neurons: list[LIFParams]) -> dict:
    """``SpikingNetwork`` arguments of a graph hm2bp did not write: the spec from the nodes, one
    time constant pair for all layers, a bias where an ``Affine`` node has one."""
    first = graph.nodes[chain[0][0]]
    input_shape = tuple(int(v) for v in np.atleast_1d(next(iter(graph.nodes[k] for k in graph.nodes
                                                               if isinstance(graph.nodes[k], nir.Input))).input_type["input"]))
    if isinstance(first, (nir.Affine, nir.Linear)):
        input_shape = (int(np.prod(input_shape)),)
    tokens = ["x".join(map(str, input_shape))]
    tokens += [_spec_token(name, graph.nodes[name], input_shape) for name, *_ in chain]
    for field in ("tau_m", "tau_s"):
        if len({getattr(c, field) for c in neurons}) != 1:
            raise ValueError(f"NIR graph: {field} differs between layers; a SpikingNetwork uses one value")
    return dict(spec="-".join(tokens), bias=any(isinstance(graph.nodes[n], nir.Affine) and np.any(graph.nodes[n].bias)
                                                 for n, *_ in chain))


def import_nir(graph: nir.NIRGraph) -> SpikingNetwork:
    """``nir.NIRGraph`` -> ``SpikingNetwork`` with the graph's weights (module docstring).

    Raises one ``ValueError`` naming the node and what hm2bp needs when the graph does not fit.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"import_nir needs a nir.NIRGraph (e.g. nir.read('model.nir')), got {type(graph).__name__}")
    meta = graph.metadata or {}
    ours = _as_str(meta.get("format", "")) == FORMAT
    dt = float(meta.get("dt", DT))
    chain = _chain(graph)
    config = json.loads(_as_str(meta["network"])) if ours else {}
    psp = _as_str(meta.get("spsp", "exact"))
    neurons = [from_cuba(graph.nodes[lif], dt, f"NIR node {lif!r}", psp) for _, _, lif, _ in chain]
    if not ours:
        config = _config_from_nodes(graph, chain, neurons)
    n_layers = len(parse_spec(config["spec"])[1])
    if n_layers != len(chain):
        raise ValueError(f"NIR graph has {len(chain)} layers but its metadata describes {n_layers}")
    net = SpikingNetwork.from_records(neurons, **config)
    with torch.no_grad():
        for (name, layer), (node_name, _, _, rec) in zip(net.layers.items(), chain):
            node = graph.nodes[node_name]
            if isinstance(layer, SpikingPool2d) != isinstance(node, nir.SumPool2d) or \
                    isinstance(layer, SpikingConv2d) != isinstance(node, nir.Conv2d):
                raise ValueError(f"NIR node {node_name!r} ({type(node).__name__}) does not fit layer {name!r}")
            if not isinstance(layer, SpikingPool2d):
                weight = torch.as_tensor(np.asarray(node.weight), dtype=layer.weight.dtype)
                if weight.shape != layer.weight.shape:
                    raise ValueError(f"NIR node {node_name!r}: weight {tuple(weight.shape)}, layer {name!r} needs "
                                     f"{tuple(layer.weight.shape)}")
                layer.weight.copy_(weight)
                bias = np.asarray(getattr(node, "bias", 0.0))
                if layer.bias is not None:
                    layer.bias.copy_(torch.as_tensor(bias, dtype=layer.bias.dtype))
                elif np.any(bias):
                    raise ValueError(f"NIR node {node_name!r} has a non-zero bias but layer {name!r} has none "
                                     f"(hm2bp conv layers built from a spec have no bias)")
            if isinstance(layer, SpikingLinear):
                matrix = None if rec is None else torch.as_tensor(np.asarray(graph.nodes[rec].weight),
                                                                  dtype=torch.get_default_dtype())
                if matrix is not None or not ours:
                    layer.set_recurrent(matrix)
            elif rec is not None:
                raise ValueError(f"NIR node {rec!r}: a recurrent matrix on a conv/pool layer ({name!r}) is not supported")
    return net
