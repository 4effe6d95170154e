r"""Surrogate-gradient BPTT conv and pooling layers on the same LIF neurons as HM2-BP
(``docs/algorithm.md``, "Convolution and pooling").

Forward: :math:`I[t] = \mathrm{conv2d}(s_{in}[t-1], W)` (one ``conv2d`` over all ``T - 1``
input frames), or the spike count of each :math:`p \times p` window for pooling neurons, then the
differentiable LIF scan :func:`hm2bp.baselines.surrogate.surrogate_lif`, so the spikes equal those of
:class:`hm2bp.SpikingConv2d` / :class:`hm2bp.SpikingPool2d` for the same weights. Backward:
autograd through time with the fast-sigmoid surrogate. Autograd keeps the float current, the
membrane and the surrogate inputs of every step: memory grows linearly with ``T``.

Shapes are time-first: ``[T, B, C, H, W]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hm2bp.baselines.surrogate import surrogate_lif
from hm2bp.checks import number
from hm2bp.functional import LIFParams
from hm2bp.functional.conv import conv_output_shape
from hm2bp.functional.params import CONV_THRESHOLD_EPS
from hm2bp.layers.neurons import NeuronLayer


def _delayed(frames: Tensor, T: int, B: int) -> Tensor:
    """Current ``[T, B, ...]`` from the ``T - 1`` frames of ``s_in[0 .. T-2]`` (``I[0] = 0``)."""
    cur = frames.view(T - 1, B, *frames.shape[1:])
    return torch.cat([cur.new_zeros(1, *cur.shape[1:]), cur], 0)


class BPTTConv2d(NeuronLayer):
    """Spiking convolution trained by surrogate-gradient BPTT (same forward as ``SpikingConv2d``).

    Args:
        in_channels, out_channels, kernel_size, stride, padding: ``weight`` is
            ``[out, in, k, k]``, as in ``SpikingConv2d`` (state dicts are interchangeable).
        neuron: the neurons' constants, a :class:`~hm2bp.functional.LIFParams`; a bare number is
            the threshold :math:`\\nu` with the official other constants (conv ``threshold_eps`` 0).
        init_range: kernels start U(-init_range, init_range) (official conv: 0.5).
        surrogate_slope: fast-sigmoid slope (:mod:`hm2bp.baselines.surrogate`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, neuron: LIFParams | float, *,
                 stride: int = 1, padding: int = 0, init_range: float = 0.5, surrogate_slope: float = 10.0) -> None:
        super().__init__(neuron, threshold_eps=CONV_THRESHOLD_EPS)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), int(padding)
        self.surrogate_slope = float(number("BPTTConv2d surrogate_slope", surrogate_slope, low=0, low_open=True))
        k = self.kernel_size
        self.weight = self.init_weight((out_channels, in_channels, k, k), init_range)

    def output_shape(self, in_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return conv_output_shape(in_shape, self.out_channels, self.kernel_size, self.stride, self.padding)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[T, B, C_in, H, W]`` spikes -> ``[T, B, C_out, H', W']`` spikes (0/1, differentiable)."""
        T, B = x.shape[:2]
        w = self.weight
        if T <= 1:
            return x.new_zeros(T, B, *self.output_shape(tuple(x.shape[2:]))).to(w.dtype) + 0.0 * w.sum()
        frames = x[:-1].reshape(-1, *x.shape[2:]).to(w.dtype)
        current = _delayed(F.conv2d(frames, w, stride=self.stride, padding=self.padding), T, B)
        return surrogate_lif(current, self.neuron, surrogate_slope=self.surrogate_slope)


class BPTTPool2d(NeuronLayer):
    """Spiking ``p x p`` pooling (unit weights, stride ``p``) trained by BPTT (same forward as
    ``SpikingPool2d``); ``neuron`` as for :class:`BPTTConv2d` (pooling ``threshold_eps`` 1e-6)."""

    def __init__(self, kernel_size: int, neuron: LIFParams | float, *, surrogate_slope: float = 10.0) -> None:
        super().__init__(neuron)
        self.kernel_size = int(kernel_size)
        self.surrogate_slope = float(number("BPTTPool2d surrogate_slope", surrogate_slope, low=0, low_open=True))

    def output_shape(self, in_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = in_shape
        return (c, h // self.kernel_size, w // self.kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[T, B, C, H, W]`` spikes -> ``[T, B, C, H//p, W//p]`` spikes (0/1, differentiable)."""
        T, B = x.shape[:2]
        p = self.kernel_size
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        frames = x[:-1].reshape(-1, *x.shape[2:]).to(dtype)
        current = _delayed(F.avg_pool2d(frames, p, stride=p, divisor_override=1), T, B)
        return surrogate_lif(current, self.neuron, surrogate_slope=self.surrogate_slope)
