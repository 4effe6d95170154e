"""``export_nir``: a ``SpikingNetwork`` as a NIR graph (docs/interop.md has the mapping table).

Node mapping, layer ``name`` by layer (NIR shapes exclude batch and time):

* ``SpikingLinear``  -> ``name`` ``Affine`` (``W [out, in]``, bias or zeros) + ``name_lif`` ``CubaLIF``;
* ``SpikingConv2d``  -> ``name`` ``Conv2d`` (``W [out, in, k, k]``, cross-correlation) + ``name_lif``;
* ``SpikingPool2d``  -> ``name`` ``SumPool2d`` (``p x p``, stride ``p``) + ``name_lif``;
* a conv/pool -> fully connected boundary -> ``flatten`` ``Flatten`` (channel-major, docs/algorithm.md "Input layout");
* lateral inhibition or a recurrent matrix -> ``name_rec`` ``Linear`` (``W_lat [post, pre]``) on the
  edges ``name_lif -> name_rec -> name_lif`` (an importer feeds it the previous step's spikes,
  as hm2bp does).

The ``CubaLIF`` parameters follow :mod:`hm2bp.nir.cuba`. What NIR cannot hold goes in the graph's
``metadata`` (:data:`METADATA_KEYS`): hm2bp feeds a layer's input spikes of step ``t - 1`` into its
current at step ``t`` (``delay_steps = 1``), so an importer that applies input in the same step
reproduces layer ``k`` (1-based) ``k - 1`` steps earlier when it is given ``x[t-1]`` at step ``t``.
"""
from __future__ import annotations

import json

import nir
import numpy as np
from torch import nn

import hm2bp
from hm2bp.layers import SpikingConv2d, SpikingLinear, SpikingPool2d
from hm2bp.nir.cuba import DT, to_cuba

FORMAT = "hm2bp-nir/1"
# graph metadata written by export_nir (all strings or numbers, so they survive nir.write/nir.read)
METADATA_KEYS = ("format", "hm2bp_version", "dt", "delay_steps", "spsp", "network", "input_encoding")


def _array(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def network_config(network: nn.Module) -> dict:
    """The ``SpikingNetwork`` constructor arguments that rebuild ``network`` (weights aside)."""
    config = getattr(network, "init_kwargs", None)
    if config is None:
        raise TypeError(f"export_nir needs a hm2bp.SpikingNetwork, got {type(network).__name__}")
    return dict(config)


def export_nir(network: nn.Module, *, dt: float = DT, input_encoding: dict | None = None) -> nir.NIRGraph:
    """``network`` (a ``SpikingNetwork``) -> ``nir.NIRGraph`` (module docstring).

    Args:
        network: the network; its weights, thresholds, time constants, refractory periods and
            lateral/recurrent matrices are exported as they are now.
        dt: seconds per hm2bp step in the graph (``tau_syn = tau_s * dt``, ...).
        input_encoding: how inputs become spikes (the datamodule, T, rate divisor, ...), stored as
            JSON in the metadata; the CLI fills it from the config.
    """
    config = network_config(network)
    shape = tuple(int(s) for s in network.input_shape)
    if len(shape) == 2:
        shape = (1, *shape)  # one-channel image
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(shape))}
    edges: list[tuple[str, str]] = []
    prev = "input"
    for name, layer in network.layers.items():
        if isinstance(layer, SpikingLinear):
            if len(shape) > 1:
                nodes["flatten"] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
                edges.append((prev, "flatten"))
                prev = "flatten"
            bias = _array(layer.bias) if layer.bias is not None else np.zeros(layer.out_features)
            nodes[name] = nir.Affine(weight=_array(layer.weight), bias=bias)
            shape = (layer.out_features,)
        elif isinstance(layer, SpikingConv2d):
            bias = _array(layer.bias) if layer.bias is not None else np.zeros(layer.out_channels)
            nodes[name] = nir.Conv2d(input_shape=shape[1:], weight=_array(layer.weight), stride=layer.stride,
                                     padding=layer.padding, dilation=1, groups=1, bias=bias)
            shape = tuple(int(v) for v in nodes[name].output_type["output"])
        elif isinstance(layer, SpikingPool2d):
            p = layer.kernel_size
            nodes[name] = nir.SumPool2d(kernel_size=np.array([p, p]), stride=np.array([p, p]),
                                        padding=np.array([0, 0]))
            shape = layer.output_shape(shape)
        else:
            raise TypeError(f"layer {name!r} ({type(layer).__name__}) has no NIR mapping")
        lif = f"{name}_lif"
        nodes[lif] = to_cuba(layer.neuron, shape, dt, hm2bp_layer=name)
        edges += [(prev, name), (name, lif)]
        if getattr(layer, "lateral", None) is not None:
            nodes[f"{name}_rec"] = nir.Linear(weight=_array(layer.lateral))
            edges += [(lif, f"{name}_rec"), (f"{name}_rec", lif)]
        prev = lif
    nodes["out"] = nir.Output(output_type=np.array(shape))
    edges.append((prev, "out"))
    metadata = {
        "format": FORMAT,
        "hm2bp_version": hm2bp.__version__,
        "dt": float(dt),
        "delay_steps": 1,
        "spsp": str(config.get("psp", config.get("spsp", "exact"))),
        "network": json.dumps(config),
        "input_encoding": json.dumps(input_encoding or {}),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)
