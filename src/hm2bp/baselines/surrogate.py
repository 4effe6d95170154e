r"""The surrogate-gradient LIF scan of the BPTT baselines (:mod:`hm2bp.baselines.bptt`,
:mod:`hm2bp.baselines.bptt_conv`), on the same LIF neurons as HM2-BP.

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

Shapes are time-first: ``[T, B, ...]``.
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from hm2bp.functional import LIFParams


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
    neuron: LIFParams | float,
    *,
    lateral: Tensor | None = None,
    surrogate_slope: float = 10.0,
    single_thread_scan: bool = True,
) -> Tensor:
    """Differentiable LIF scan: ``current`` ``[T, B, N]`` -> spikes ``[T, B, N]`` (0/1, current's dtype).

    Same arguments and forward result as :func:`hm2bp.functional.lif_simulate` (``current[0]`` is
    ignored; ``current[t] = W s_in[t-1]``; ``neuron`` a :class:`~hm2bp.functional.LIFParams` or a
    bare threshold); gradients flow back through time via the surrogate derivative (module
    docstring) of slope ``surrogate_slope``.

    ``single_thread_scan``: on CPU run the step loop, forward and backward, on one intra-op thread
    (``_single_thread``): thousands of tiny per-step ops lose more to thread synchronisation than they gain, badly so on a loaded machine. The
    backward part is switched by two tensor hooks (on the stacked output, whose gradient arrives
    first, and on ``current``, whose gradient is complete when the scan's backward is done).
    """
    neuron = LIFParams.of(neuron, "surrogate_lif")
    T = current.shape[0]
    zeros = current.new_zeros(current.shape[1:])
    if T <= 1:
        return current * 0.0  # no spike at t = 0 (keeps the graph)
    leak_m = 1.0 - 1.0 / neuron.tau_m
    leak_s = 1.0 - 1.0 / neuron.tau_s
    theta = neuron.threshold - neuron.threshold_eps
    lat_t = lateral.t() if lateral is not None else None
    steps = current.unbind(0)  # per-step views: O(T) backward (no per-step whole-tensor index)
    v = zeros
    ep = zeros
    s_prev = zeros  # surrogate-carrying spikes at t-1 (for the lateral term)
    counter: Tensor | None = None  # refractory counter (no grad)
    out = [zeros]  # no spike at t = 0
    with _single_thread(current.device) if single_thread_scan else contextlib.nullcontext():
        _scan(out, steps, T, v, ep, s_prev, counter, leak_m, leak_s, neuron.tau_s, theta, lat_t, neuron.refractory,
              neuron.threshold, surrogate_slope)
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
