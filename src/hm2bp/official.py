r"""Reader for the trained weights that the authors' program (``jinyyy666/mm-bp-snn``) saves as text.

The program saves a network as one stream of ``%f``-printed floats, layer by layer in its
breadth-first layer order (for the chains hm2bp builds: the network's own layer order), with
nothing saved for the data and pooling layers:

* convolution, ``C_out`` kernels of ``C_in x k x k``: all kernels, each ordered (input channel,
  kernel row, kernel column), then ``C_out`` biases;
* fully connected, ``N_out x N_in``: ``W[post][pre]`` row by row, then the fixed lateral matrix
  ``W_lat[post][pre]`` (``N_out x N_out``) when the layer has one, then ``N_out`` biases.

The kernel order is the one the convolution reads (cross-correlation; docs/algorithm.md, "Convolution and pooling"): the tap in row
``i`` and column ``j`` of input channel ``c`` weighs input pixel ``(x + i, y + j)``. Biases exist in
the file but the program never injects them (``BIAS_FREQ`` exceeds ``T``; docs/algorithm.md, "Neuron model"), so they are
checked to be finite and otherwise not used. The lateral matrix must equal the network's fixed
``-w_0 (1 - I)`` (docs/algorithm.md, "Lateral inhibition"). Example: the authors' MNIST CNN ``28x28-15C5-P2-40C5-P2-300-10``
holds ``(375 + 15) + (15000 + 40) + (192000 + 300) + (3000 + 100 + 10) = 210840`` floats.

The conv-bias position (after all kernels, not after each kernel) is the one the published
``checkPoint_cnn_best.txt`` shows: its 15 and 40 zero biases sit at floats 375-389 and
15390-15429.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hm2bp.layers import SpikingConv2d, SpikingLinear, SpikingPool2d

_FLOAT = re.compile(rb"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?(\s|$)")


@dataclass(frozen=True)
class Block:
    """One run of floats in the file: ``layer`` ``part`` (``weight``, ``lateral`` or ``bias``) of ``shape``."""

    layer: str
    part: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def layout(network: nn.Module) -> list[Block]:
    """The blocks the authors' save code writes for ``network`` (a ``SpikingNetwork``), in file order."""
    blocks = []
    for name, layer in network.layers.items():
        if isinstance(layer, SpikingConv2d):
            k = layer.kernel_size
            blocks += [Block(name, "weight", (layer.out_channels, layer.in_channels, k, k)),
                       Block(name, "bias", (layer.out_channels,))]
        elif isinstance(layer, SpikingLinear):
            n_out, n_in = layer.out_features, layer.in_features
            blocks.append(Block(name, "weight", (n_out, n_in)))
            if layer.lateral is not None:
                blocks.append(Block(name, "lateral", (n_out, n_out)))
            blocks.append(Block(name, "bias", (n_out,)))
        elif not isinstance(layer, SpikingPool2d):
            raise TypeError(f"layer {name!r} ({type(layer).__name__}) has no official checkpoint layout")
    return blocks


def is_official_checkpoint(path: str | os.PathLike) -> bool:
    """``True`` when ``path`` is a file that starts with a printed float (a text checkpoint of the
    authors' program), ``False`` for anything else (e.g. a PyTorch zip or pickle checkpoint)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return bool(_FLOAT.match(head))


def read_floats(path: str | os.PathLike) -> np.ndarray:
    """All whitespace-separated floats of ``path`` as float64, with one clear error for a missing
    file or a token that is not a number."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"official checkpoint not found: {path}")
    with open(path, "rb") as f:
        tokens = f.read().split()
    try:
        return np.array(tokens, dtype=np.float64)
    except ValueError:
        for k, tok in enumerate(tokens):
            try:
                float(tok)
            except ValueError:
                raise ValueError(
                    f"official checkpoint {path}: value {k} is {tok[:40]!r}, not a number; the file must be the "
                    f"plain float list the authors' program saves (e.g. Result/checkPoint_cnn_best.txt)"
                ) from None
        raise


def load_checkpoint(network: nn.Module, path: str | os.PathLike) -> None:
    """Fill ``network`` (a ``SpikingNetwork`` of the checkpoint's architecture) in place from the
    authors' text checkpoint ``path``.

    Every check runs before any weight is written: the float count must equal the network's
    layout (:func:`layout`), every value must be finite, and each saved lateral matrix must equal
    the layer's fixed inhibition. Errors name the file, the count per layer and the fix.
    """
    values = read_floats(path)
    blocks = layout(network)
    need = sum(b.size for b in blocks)
    if values.size != need:
        parts = ", ".join(f"{b.layer}.{b.part} {b.size}" for b in blocks)
        raise ValueError(
            f"official checkpoint {path} holds {values.size} floats but network {getattr(network, 'spec', '?')!r} "
            f"needs {need} ({parts}); build the network the checkpoint was trained with (the authors' MNIST CNN is "
            f"'28x28-15C5-P2-40C5-P2-300-10' with output_lateral_inhibition 1, configs/experiment/mnist_cnn.yaml)"
        )
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"official checkpoint {path}: value {bad} is {values[bad]}; the file is damaged")
    chunks, start = [], 0
    for b in blocks:
        chunks.append((b, values[start : start + b.size].reshape(b.shape)))
        start += b.size
    for b, arr in chunks:
        if b.part == "lateral":
            own = network.layers[b.layer].lateral.detach().double().cpu().numpy()
            if not np.array_equal(arr, own):
                raise ValueError(
                    f"official checkpoint {path}: the lateral matrix of {b.layer!r} (off-diagonal values "
                    f"{np.unique(arr[~np.eye(len(arr), dtype=bool)]).tolist()[:4]}) differs from the network's "
                    f"-w0 (1 - I) with w0 = {network.layers[b.layer].lateral_inhibition:g}; set "
                    f"output_lateral_inhibition to the checkpoint's w0"
                )
    with torch.no_grad():
        for b, arr in chunks:
            if b.part == "weight":
                weight = network.layers[b.layer].weight
                weight.copy_(torch.from_numpy(arr).to(weight.dtype))
