r"""Surrogate-gradient BPTT on the same LIF neurons as HM2-BP, for side-by-side comparison.

The forward dynamics are those of :func:`hm2bp.functional.lif_simulate` (``docs/algorithm.md``, "Neuron model"): leak,
input delivered with a 1-step delay, integrate, refractory clamp, fire, reset of ``v`` only, no
spike at ``t = 0``, optional fixed lateral matrix on the layer's own spikes at ``t - 1``. With
the same weights the spikes are identical (``tests/test_baselines.py`` checks it in float64).

The difference is the backward pass: here the scan is an ordinary differentiable step loop and
autograd back-propagates through time. The Heaviside spike function gets a surrogate
derivative, the fast sigmoid of the membrane normalised by the threshold:

.. math::

    \frac{\partial s}{\partial v} = \frac{1}{\nu\,(1 + k\,|v - \nu'|/\nu)^2},\qquad \nu' = \nu - \varepsilon_\nu

with slope ``k = surrogate_slope``. The reset and the refractory clamp are gates driven by the
(detached) spike history, as in snnTorch's default ``reset_delay``/detached reset: gradients
flow through the membrane that survives them, through the synaptic trace (never reset) and
through the lateral connections, but not through the decision to reset.

Cost: autograd keeps a handful of ``[B, N]`` tensors per time step, so memory grows linearly with
``T`` (HM2-BP keeps only the 1-byte spike trains). The loop iterates with ``unbind`` and stacks
the outputs once, so backward is O(T) (indexing a whole-sequence tensor per step inside the
graph would make it O(T^2)).

Shapes are time-first: ``[T, B, features]``.
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from hm2bp.checks import check_labels, check_spikes, number
from hm2bp.errors import ConfigError, InputError
from hm2bp.functional import LIFParams
from hm2bp.network import parse_spec


class _FastSigmoidSpike(torch.autograd.Function):
    """Heaviside ``v > theta`` forward; fast-sigmoid derivative of ``(v - theta) / scale`` backward."""

    @staticmethod
    def forward(ctx, v: Tensor, theta: float, scale: float, slope: float) -> Tensor:
        ctx.save_for_backward(v)
        ctx.theta, ctx.scale, ctx.slope = theta, scale, slope
        return (v > theta).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (v,) = ctx.saved_tensors
        x = (v - ctx.theta).abs_().mul_(ctx.slope / ctx.scale).add_(1.0)
        return grad / (x.square_().mul_(ctx.scale)), None, None, None


def surrogate_lif(
    current: Tensor,
    threshold: float,
    *,
    tau_m: float = LIFParams.tau_m,
    tau_s: float = LIFParams.tau_s,
    refractory: int = LIFParams.refractory,
    lateral: Tensor | None = None,
    threshold_eps: float = LIFParams.threshold_eps,
    surrogate_slope: float = 10.0,
    single_thread_scan: bool = True,
) -> Tensor:
    """Differentiable LIF scan: ``current`` ``[T, B, N]`` -> spikes ``[T, B, N]`` (0/1, current's dtype).

    Same arguments and forward result as :func:`hm2bp.functional.lif_simulate` (``current[0]`` is
    ignored; ``current[t] = W s_in[t-1]``); gradients flow back through time via the surrogate
    derivative (module docstring).

    ``single_thread_scan``: on CPU run the step loop, forward and backward, on one intra-op thread
    (``_single_thread``): thousands of tiny per-step ops lose more to thread synchronisation than they gain, badly so on a loaded machine. The
    backward part is switched by two tensor hooks (on the stacked output, whose gradient arrives
    first, and on ``current``, whose gradient is complete when the scan's backward is done).
    """
    T = current.shape[0]
    zeros = current.new_zeros(current.shape[1:])
    if T <= 1:
        return current * 0.0  # no spike at t = 0 (keeps the graph)
    leak_m = 1.0 - 1.0 / tau_m
    leak_s = 1.0 - 1.0 / tau_s
    theta = threshold - threshold_eps
    lat_t = lateral.t() if lateral is not None else None
    steps = current.unbind(0)  # per-step views: O(T) backward (no per-step whole-tensor index)
    v = zeros
    ep = zeros
    s_prev = zeros  # surrogate-carrying spikes at t-1 (for the lateral term)
    counter: Tensor | None = None  # refractory counter (no grad)
    out = [zeros]  # no spike at t = 0
    with _single_thread(current.device) if single_thread_scan else contextlib.nullcontext():
        _scan(out, steps, T, v, ep, s_prev, counter, leak_m, leak_s, tau_s, theta, lat_t, refractory,
              threshold, surrogate_slope)
    spikes = torch.stack(out)
    if (single_thread_scan and spikes.requires_grad and current.requires_grad and current.device.type == "cpu"
            and torch.get_num_threads() > 1):
        _single_thread_backward(spikes, current)
    return spikes


@contextlib.contextmanager
def _single_thread(device: torch.device):
    """One intra-op thread on CPU for the step loop (thousands of tiny ops: threads only add sync
    cost), restored afterwards. The HM2-BP layers leave threads to the caller's run-level setting."""
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _single_thread_backward(spikes: Tensor, current: Tensor) -> None:
    saved: list[int] = []

    def enter(grad):
        saved.append(torch.get_num_threads())
        torch.set_num_threads(1)
        return grad

    def leave(grad):
        if saved:
            torch.set_num_threads(saved.pop())
        return grad

    spikes.register_hook(enter)
    current.register_hook(leave)


def _scan(out, steps, T, v, ep, s_prev, counter, leak_m, leak_s, tau_s, theta, lat_t, refractory, scale, slope):
    for t in range(1, T):
        ep = ep * leak_s + steps[t]
        if lat_t is not None and t > 1:
            ep = ep + s_prev @ lat_t
        v = torch.add(v * leak_m, ep, alpha=1.0 / tau_s)
        if refractory > 0 and counter is not None:
            v = torch.where(counter > 0, 0.0, v)
            counter = (counter - 1).clamp_(min=0)
        s = _FastSigmoidSpike.apply(v, theta, scale, slope)
        fired = s.detach() > 0
        v = torch.where(fired, 0.0, v)  # reset v only; the reset gate is not differentiated
        if refractory > 0:
            counter = fired.to(torch.int16) * refractory if counter is None else torch.where(fired, refractory, counter)
        out.append(s)
        s_prev = s


class BPTTLinear(nn.Module):
    """Fully connected LIF layer trained by surrogate-gradient BPTT (same forward as ``SpikingLinear``).

    Args:
        in_features, out_features: sizes; ``weight`` is ``[out, in]`` like ``nn.Linear`` and
            ``hm2bp.SpikingLinear`` (so state dicts are interchangeable).
        threshold: firing threshold :math:`\\nu`.
        tau_m, tau_s, refractory: neuron constants in steps (official 64, 8, 2).
        lateral_inhibition: ``w0`` of fixed all-to-all inhibition ``-w0 (1 - I)`` on the layer's own
            spikes at ``t-1`` ("Lateral inhibition"). Gradients flow through it (it is part of the graph).
        bias: add a trainable bias current.
        init_range: weights start U(-init_range, init_range).
        surrogate_slope: slope ``k`` of the fast-sigmoid surrogate of the threshold-normalised
            membrane (module docstring).
        threshold_eps: spike when ``v > threshold - threshold_eps`` (official FC: 1e-6).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        threshold: float,
        *,
        tau_m: float = LIFParams.tau_m,
        tau_s: float = LIFParams.tau_s,
        refractory: int = LIFParams.refractory,
        lateral_inhibition: float = 0.0,
        bias: bool = False,
        init_range: float = 1.0,
        surrogate_slope: float = 10.0,
        threshold_eps: float = LIFParams.threshold_eps,
    ) -> None:
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ConfigError(f"BPTTLinear sizes must be positive, got {in_features} -> {out_features}")
        number("BPTTLinear threshold", threshold, low=0, low_open=True,
               hint="a positive firing threshold (model.network.init_args.thresholds in a config)")
        number("BPTTLinear surrogate_slope", surrogate_slope, low=0, low_open=True)
        for key, value in (("tau_m", tau_m), ("tau_s", tau_s)):
            number(f"BPTTLinear {key}", value, low=0, low_open=True)
        number("BPTTLinear refractory", refractory, low=0, integer=True)
        self.in_features = in_features
        self.out_features = out_features
        self.threshold = float(threshold)
        self.tau_m = float(tau_m)
        self.tau_s = float(tau_s)
        self.refractory = int(refractory)
        self.threshold_eps = float(threshold_eps)
        self.lateral_inhibition = float(lateral_inhibition)
        self.surrogate_slope = float(surrogate_slope)
        self.init_range = init_range
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-init_range, init_range))
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
        return surrogate_lif(
            current,
            self.threshold,
            tau_m=self.tau_m,
            tau_s=self.tau_s,
            refractory=self.refractory,
            lateral=lateral,
            threshold_eps=self.threshold_eps,
            surrogate_slope=self.surrogate_slope,
        )

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
        if len(thresholds) != len(layer_specs):
            raise ConfigError(
                f"network spec {spec!r} has {len(layer_specs)} layers but {len(thresholds)} thresholds were given"
            )
        self.layers = nn.ModuleDict()
        n_in = self.num_inputs
        shape = tuple(self.input_shape) if len(self.input_shape) == 3 else (1, *self.input_shape)
        counters = {"fc": 0, "conv": 0, "pool": 0}
        for k, (ls, thr) in enumerate(zip(layer_specs, thresholds)):
            last = k == len(layer_specs) - 1
            counters[ls.kind] += 1
            name = "output" if last else f"{ls.kind}{counters[ls.kind]}"
            if ls.kind != "fc":  # conv / pool (hm2bp.baselines.bptt_conv), names as in SpikingNetwork
                from hm2bp.baselines.bptt_conv import BPTTConv2d, BPTTPool2d

                if len(shape) != 3 or n_in != shape[0] * shape[1] * shape[2]:
                    raise ValueError(f"network spec {spec!r}: conv/pool layers need an image input before them")
                if ls.kind == "conv":
                    layer = BPTTConv2d(shape[0], ls.size, ls.kernel_size, thr, tau_m=tau_m, tau_s=tau_s,
                                       refractory=refractory, init_range=conv_init, surrogate_slope=surrogate_slope)
                else:
                    layer = BPTTPool2d(ls.size, thr, tau_m=tau_m, tau_s=tau_s, refractory=refractory,
                                       surrogate_slope=surrogate_slope)
                shape = layer.output_shape(shape)
                n_in = shape[0] * shape[1] * shape[2]
                self.layers[name] = layer
                continue
            self.layers[name] = BPTTLinear(
                n_in,
                ls.size,
                thr,
                tau_m=tau_m,
                tau_s=tau_s,
                refractory=refractory,
                lateral_inhibition=output_lateral_inhibition if last else 0.0,
                bias=bias,
                init_range=fc_init,
                surrogate_slope=surrogate_slope,
                threshold_eps=threshold_eps,
            )
            n_in = ls.size
            shape = (ls.size,)
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
