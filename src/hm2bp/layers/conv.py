r"""``SpikingConv2d``: LIF feature maps with shared kernels, trained with HM2-BP
(``docs/algorithm.md``, "Convolution and pooling").

Forward ("Neuron model"): input current :math:`I[t] = \mathrm{conv2d}(s_{in}[t-1], W) (+ b)`
(cross-correlation, valid padding by default), then the LIF scan, block by block
(:func:`hm2bp.functional.forward.conv_forward`). The current is gathered over the input spike
events, never a dense ``conv2d`` over every step unless the input is denser than
``MAX_CONV_DENSITY``. Backward: the HM2-BP rule of :mod:`hm2bp.functional.conv` (dense inputs) or
:mod:`hm2bp.functional.conv_grad` (from the same events and the adjoint trace). Like every layer it
takes and returns :class:`~hm2bp.layers.spikes.Spikes`; only the 1-byte trains and int32 spike
indices are kept for backward. Official conv layers compare against exactly :math:`\nu`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from hm2bp.checks import check_spikes
from hm2bp.errors import ConfigError, InputError
from hm2bp.functional import HM2BPRule, LIFParams
from hm2bp.functional.conv import conv_hm2bp_backward, conv_output_shape
from hm2bp.functional.conv_events import ConvGeometry
from hm2bp.functional.conv_grad import CONV_MEMORY_BUDGET, conv_hm2bp_backward_events, counts_from_index, input_events
from hm2bp.functional.forward import BLOCK, conv_forward
from hm2bp.functional.live import LiveSamples
from hm2bp.functional.params import CONV_THRESHOLD_EPS
from hm2bp.functional.rule import regulariser_grad
from hm2bp.layers.neurons import NeuronLayer
from hm2bp.layers.spikes import Spikes


def _check_input(x: Tensor, channels: int | None, name: str, values: bool) -> None:
    """Shape ``[T, B, C, H, W]`` (always); 0/1 values, T >= 2, B >= 1 when ``values``."""
    if values:
        check_spikes(x, name, min_dim=5)
    if x.dim() != 5 or (channels is not None and x.shape[2] != channels):
        raise InputError(f"{name} expects spikes [T, B, {channels or 'C'}, H, W], got {tuple(x.shape)}")


class _HM2BPConv(torch.autograd.Function):
    """Counts in, ``(counts, bool spike trains, spike index)`` out; only the counts are differentiable.

    Takes tensors, the frozen records ``neuron``, ``rule`` and ``geom`` and plain options (never the module).
    """

    @staticmethod
    def forward(ctx, counts_in, weight, bias, spikes_in, in_index, neuron, rule, geom, path, memory_budget,
                block):  # noqa: D401 - autograd signature
        out, counts, index, out_index, sparse = conv_forward(spikes_in, weight, bias, neuron, geom,
                                                             input_index=in_index, block=block)
        ctx.neuron, ctx.rule, ctx.geom, ctx.path, ctx.memory_budget = neuron, rule, geom, path, memory_budget
        ctx.has_bias = bias is not None
        ctx.sparse = sparse
        ctx.save_for_backward(spikes_in, out, weight, bias, counts_in, counts, index, out_index)
        ctx.mark_non_differentiable(out, out_index)
        return counts, out, out_index

    @staticmethod
    def backward(ctx, grad_counts, _grad_spikes, _grad_index):
        pre, post, weight, bias, counts_in, counts, index, out_index = ctx.saved_tensors
        bias = bias if ctx.has_bias else None
        need_in = ctx.needs_input_grad[0]
        none = (None,) * 8
        T = pre.shape[0]
        per_sample = pre[0, 0].numel()
        live = LiveSamples.of(grad_counts)
        if live is not None:  # samples without error add exact zeros: run the rest (functional/live.py)
            pre, post, index, out_index = live.trains(pre, post, index, out_index)
            counts_in, counts, grad_counts = live.rows(counts_in), live.rows(counts), live.rows(grad_counts)
        B = pre.shape[1]
        if not ctx.sparse:  # dense input: the conv-form backward over time chunks
            gw, gin, gb = conv_hm2bp_backward(pre, post, weight, grad_counts, ctx.neuron, ctx.rule, stride=ctx.geom.stride,
                                              padding=ctx.geom.padding, bias=bias, need_input_grad=need_in)
        else:
            o_in = counts_in if counts_in is not None else counts_from_index(index, B, per_sample, weight.dtype)
            gw, gin, gb = conv_hm2bp_backward_events(
                input_events(index, T, B, per_sample), out_index, ctx.geom, weight, grad_counts, ctx.neuron, ctx.rule,
                o_in=o_in.reshape(pre.shape[1:]), o_out=counts, pre=pre, bias=bias, need_input_grad=need_in,
                path=ctx.path, memory_budget=ctx.memory_budget,
            )
        if live is not None:  # the regulariser once per sample of the whole batch; no error to the dropped
            gw = gw + live.dropped * regulariser_grad(weight, ctx.rule)
            gin = live.scatter(gin)
        return (gin, gw, gb, *none)


class SpikingConv2d(NeuronLayer):
    """2-D convolution of LIF neurons with shared kernels, trained with HM2-BP (``docs/algorithm.md``, "Convolution and pooling").

    Args:
        in_channels, out_channels, kernel_size: ``weight`` is ``[out, in, k, k]`` like ``nn.Conv2d``.
        neuron: the neurons' constants and S-PSP convention, a :class:`~hm2bp.functional.LIFParams`
            ("Neuron model"); a bare number is the threshold :math:`\\nu` (official CNN: conv1 5,
            conv2 12) with the official other constants and the conv layers' ``threshold_eps`` 0.
        rule: the HM2-BP rule, a :class:`~hm2bp.functional.HM2BPRule` ("Weight update"; its
            lateral inhibition and target injection are unused; the regulariser acts per output
            kernel, mean over in, k, k). Default: its defaults.
        stride, padding: of the cross-correlation (official: 1, 0 = valid).
        bias: trainable per-channel bias current (the official program has none).
        init_range: kernels start U(-init_range, init_range) (official conv: 0.5).
        check_inputs: check the values of every tensor input (0/1 spikes); ``False`` skips it.

    Shapes: ``[T, B, in_channels, H, W]`` (0/1, any dtype) -> ``[T, B, out_channels, H', W']``
    (0/1 in the weight's dtype).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        neuron: LIFParams | float,
        rule: HM2BPRule | None = None,
        *,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        init_range: float = 0.5,
        check_inputs: bool = True,
    ) -> None:
        super().__init__(neuron, rule or HM2BPRule(), threshold_eps=CONV_THRESHOLD_EPS)
        self.check_inputs = bool(check_inputs)
        if min(in_channels, out_channels, kernel_size, stride) <= 0 or padding < 0:
            raise ConfigError(
                f"SpikingConv2d needs positive channels/kernel/stride and padding >= 0, got in={in_channels}, "
                f"out={out_channels}, kernel={kernel_size}, stride={stride}, padding={padding}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.padding = int(padding)
        k = self.kernel_size
        self.weight = self.init_weight((out_channels, in_channels, k, k), init_range)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.block = BLOCK  # time steps per block of the forward simulation
        self.memory_budget = CONV_MEMORY_BUDGET  # bytes per block of samples in the backward
        self.backward_path = "auto"  # "output" (adjoint trace), "input" (input traces) or "gemm"; same gradients

    def output_shape(self, in_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """``(C_out, H', W')`` for inputs ``(C_in, H, W)``."""
        return conv_output_shape(in_shape, self.out_channels, self.kernel_size, self.stride, self.padding)

    def geometry(self, in_shape: tuple[int, int, int]) -> ConvGeometry:
        """Shapes, stride and padding of the layer on inputs ``(C_in, H, W)``."""
        c, h, w = in_shape
        return ConvGeometry(c, h, w, self.out_channels, self.kernel_size, self.stride, self.padding)

    def forward(self, x: "Tensor | Spikes", target: Tensor | None = None) -> "Tensor | Spikes":
        """``x`` :class:`Spikes` (``[T, B, C_in, H, W]``) -> :class:`Spikes` (``[T, B, C_out, H', W']``,
        bool trains, counts carrying ``dE/do``); or a tensor of 0/1 spikes (values checked unless
        ``check_inputs`` is off) -> float trains in the weight's dtype. ``target`` is unused."""
        if isinstance(x, Spikes):
            return self._spikes(x)
        _check_input(x, self.in_channels, "SpikingConv2d", self.check_inputs)
        return self._spikes(Spikes.of(x)).float_trains()

    def _spikes(self, x: Spikes) -> Spikes:
        _check_input(x.trains, self.in_channels, "SpikingConv2d", False)
        geom = self.geometry(tuple(x.shape[2:]))
        if min(geom.h_out, geom.w_out) <= 0:
            raise InputError(f"SpikingConv2d: input {tuple(x.shape[3:])} is smaller than the {self.kernel_size}x"
                             f"{self.kernel_size} kernel (padding {self.padding})")
        counts, trains, index = _HM2BPConv.apply(
            x.counts, self.weight, self.bias, x.trains.detach(), x.index, self.neuron, self.rule, geom,
            self.backward_path, self.memory_budget, self.block,
        )
        return Spikes(trains, counts, index)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, threshold={self.threshold:g}, psp={self.psp!r}, bias={self.bias is not None}"
        )
