r"""Surrogate-gradient BPTT on the same LIF neurons as HM2-BP, for side-by-side comparison.

:class:`BPTTLinear` and :class:`BPTTNetwork` (with the conv and pooling layers of
:mod:`hm2bp.baselines.bptt_conv`) run the forward dynamics of :func:`hm2bp.functional.lif_simulate`
(``docs/algorithm.md``, "Neuron model") as the differentiable scan
:func:`hm2bp.baselines.surrogate.surrogate_lif`, so with the same weights the spikes equal those of
the HM2-BP layers (``tests/test_baselines.py`` checks it in float64); autograd then
back-propagates through time with a fast-sigmoid surrogate derivative. Layers take the same
neuron record (:class:`~hm2bp.functional.LIFParams`) as the HM2-BP layers; they have no
:class:`~hm2bp.functional.HM2BPRule`.

Cost: autograd keeps a handful of ``[B, N]`` tensors per time step, so memory grows linearly with
``T`` (HM2-BP keeps only the 1-byte spike trains).

Shapes are time-first: ``[T, B, features]``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from hm2bp.baselines.bptt_conv import BPTTConv2d, BPTTPool2d
from hm2bp.baselines.surrogate import surrogate_lif
from hm2bp.checks import check_labels, check_spikes, number
from hm2bp.errors import ConfigError, InputError
from hm2bp.functional import LIFParams
from hm2bp.layers.neurons import NeuronLayer
from hm2bp.network import layer_names, neuron_records, parse_spec

__all__ = ["BPTTLinear", "BPTTNetwork", "surrogate_lif"]


class BPTTLinear(NeuronLayer):
    """Fully connected LIF layer trained by surrogate-gradient BPTT (same forward as ``SpikingLinear``).

    Args:
        in_features, out_features: sizes; ``weight`` is ``[out, in]`` like ``nn.Linear`` and
            ``hm2bp.SpikingLinear`` (so state dicts are interchangeable).
        neuron: the neurons' constants, a :class:`~hm2bp.functional.LIFParams` (its ``psp`` is
            unused); a bare number is the threshold :math:`\\nu` with the official other constants.
        lateral_inhibition: ``w0`` of fixed all-to-all inhibition ``-w0 (1 - I)`` on the layer's own
            spikes at ``t-1`` ("Lateral inhibition"). Gradients flow through it (it is part of the graph).
        bias: add a trainable bias current.
        init_range: weights start U(-init_range, init_range).
        surrogate_slope: slope ``k`` of the fast-sigmoid surrogate of the threshold-normalised
            membrane (:mod:`hm2bp.baselines.surrogate`).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        neuron: LIFParams | float,
        *,
        lateral_inhibition: float = 0.0,
        bias: bool = False,
        init_range: float = 1.0,
        surrogate_slope: float = 10.0,
    ) -> None:
        super().__init__(neuron)
        if in_features <= 0 or out_features <= 0:
            raise ConfigError(f"BPTTLinear sizes must be positive, got {in_features} -> {out_features}")
        self.surrogate_slope = float(number("BPTTLinear surrogate_slope", surrogate_slope, low=0, low_open=True))
        self.in_features = in_features
        self.out_features = out_features
        self.lateral_inhibition = float(number("BPTTLinear lateral_inhibition", lateral_inhibition))
        self.weight = self.init_weight((out_features, in_features), init_range)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.lateral: Tensor | None = None  # fixed W_lat[post, pre], not trained, not in state_dict
        if self.lateral_inhibition != 0.0:
            self.lateral = -self.lateral_inhibition * (1.0 - torch.eye(out_features))

    def forward(self, x: Tensor, target: Tensor | None = None) -> Tensor:
        """``x`` ``[T, B, in]`` spikes -> ``[T, B, out]`` spikes; ``target`` is accepted and unused."""
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise InputError(f"BPTTLinear expects spikes [T, B, {self.in_features}], got {tuple(x.shape)}")
        T, B = x.shape[:2]
        w = self.weight
        xin = x if x.dtype == w.dtype else x.to(w.dtype)
        # I[t] = W s_in[t-1] (+ b): one GEMM for all steps; I[0] is ignored by the scan
        cur = xin[:-1] @ w.t()  # [T-1, B, out]
        if self.bias is not None:
            cur = cur + self.bias
        current = torch.cat([cur.new_zeros(1, B, self.out_features), cur], 0)  # [T, B, out]
        lateral = None
        if self.lateral is not None:
            lateral = self.lateral.to(device=w.device, dtype=w.dtype)
        return surrogate_lif(current, self.neuron, lateral=lateral, surrogate_slope=self.surrogate_slope)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, threshold={self.threshold:g}, "
            f"surrogate_slope={self.surrogate_slope:g}, lateral_inhibition={self.lateral_inhibition:g}, "
            f"bias={self.bias is not None}"
        )


class BPTTNetwork(nn.Module):
    """Spiking network trained by surrogate-gradient BPTT.

    Mirrors :class:`hm2bp.SpikingNetwork` for FC specs (``"784-800-10"``) and conv specs
    (``"28x28-15C5-P2-40C5-P2-300-10"``, layers of :mod:`hm2bp.baselines.bptt_conv`): same layer names
    (``conv1, pool1, ..., fc1, ..., output``), ``num_inputs``, ``num_classes``, ``layer_names`` and
    ``forward(x, target=None, return_all=False)`` returning spikes ``[T, B, classes]``, so
    :class:`hm2bp.SpikingClassifier` trains it unchanged with ``SpikeCountLoss`` (select it in a
    config with ``model.network.class_path: hm2bp.baselines.BPTTNetwork``).

    Args:
        spec: architecture string, e.g. ``"784-800-10"`` or ``"28x28-15C5-P2-40C5-P2-300-10"``.
        thresholds: one firing threshold per layer.
        tau_m, tau_s, refractory: neuron constants for every layer.
        output_lateral_inhibition: ``w0`` of the output layer's all-to-all inhibition.
        fc_init, conv_init: uniform init ranges of the FC weights and the conv kernels.
        bias: trainable bias currents.
        surrogate_slope: fast-sigmoid slope of every layer.
        threshold_eps: spike when ``v > threshold - threshold_eps``.
        check_inputs: check every ``forward`` input (0/1 spikes, labels in range), as
            :class:`hm2bp.SpikingNetwork` does.
    """

    def __init__(
        self,
        spec: str,
        thresholds: list[float],
        *,
        tau_m: float = LIFParams.tau_m,
        tau_s: float = LIFParams.tau_s,
        refractory: int = LIFParams.refractory,
        output_lateral_inhibition: float = 0.0,
        fc_init: float = 1.0,
        conv_init: float = 0.5,
        bias: bool = False,
        surrogate_slope: float = 10.0,
        threshold_eps: float = LIFParams.threshold_eps,
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.check_inputs = bool(check_inputs)
        self.input_shape, layer_specs = parse_spec(spec)
        neurons = neuron_records(spec, layer_specs, thresholds, tau_m=tau_m, tau_s=tau_s, refractory=refractory,
                                 fc_eps=threshold_eps, where="BPTTNetwork")
        # the constructor arguments, plain values (checkpoints store them: hm2bp.settings)
        self.init_kwargs = dict(
            spec=str(spec), thresholds=[float(t) for t in thresholds], tau_m=float(tau_m), tau_s=float(tau_s),
            refractory=int(refractory), output_lateral_inhibition=float(output_lateral_inhibition),
            fc_init=float(fc_init), conv_init=float(conv_init), bias=bool(bias),
            surrogate_slope=float(surrogate_slope), threshold_eps=float(threshold_eps),
        )
        self.layers = nn.ModuleDict()
        n_in = self.num_inputs
        shape = tuple(self.input_shape) if len(self.input_shape) == 3 else (1, *self.input_shape)
        for name, ls, neuron in zip(layer_names(layer_specs), layer_specs, neurons):
            if ls.kind == "fc":
                self.layers[name] = BPTTLinear(
                    n_in, ls.size, neuron, lateral_inhibition=output_lateral_inhibition if name == "output" else 0.0,
                    bias=bias, init_range=fc_init, surrogate_slope=surrogate_slope,
                )
                n_in = ls.size
                shape = (ls.size,)
                continue
            if len(shape) != 3 or n_in != shape[0] * shape[1] * shape[2]:
                raise ValueError(f"network spec {spec!r}: conv/pool layers need an image input before them")
            if ls.kind == "conv":
                layer = BPTTConv2d(shape[0], ls.size, ls.kernel_size, neuron, init_range=conv_init,
                                   surrogate_slope=surrogate_slope)
            else:
                layer = BPTTPool2d(ls.size, neuron, surrogate_slope=surrogate_slope)
            shape = layer.output_shape(shape)
            n_in = shape[0] * shape[1] * shape[2]
            self.layers[name] = layer
        self.num_classes = layer_specs[-1].size

    @property
    def num_inputs(self) -> int:
        n = 1
        for d in self.input_shape:
            n *= d
        return n

    @property
    def layer_names(self) -> list[str]:
        return list(self.layers.keys())

    def forward(self, x: Tensor, target: Tensor | None = None, return_all: bool = False):
        """``x`` ``[T, B, *input]`` spikes -> output spikes ``[T, B, classes]`` (``target`` unused).

        With ``return_all`` returns ``{layer name: spikes [T, B, ...]}`` in order.
        """
        if self.check_inputs:
            check_spikes(x, f"BPTTNetwork {self.spec!r}")
            if target is not None:
                check_labels(target, self.num_classes, x.shape[1], f"BPTTNetwork {self.spec!r}")
        if x.dim() < 3 or x[0, 0].numel() != self.num_inputs:
            raise InputError(f"network {self.spec!r} expects inputs [T, B, {self.num_inputs}], got {tuple(x.shape)}")
        T, B = x.shape[:2]
        h = x.reshape(T, B, -1)
        out = {}
        image = tuple(self.input_shape) if len(self.input_shape) == 3 else (1, *self.input_shape)
        for name, layer in self.layers.items():
            if isinstance(layer, BPTTLinear):
                h = h.reshape(T, B, -1)  # channel-major flattening, as SpikingNetwork
            elif h.dim() == 3:
                h = h.reshape(T, B, *image)
            h = layer(h)
            if return_all:
                out[name] = h
        return out if return_all else h
