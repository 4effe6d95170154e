r"""``SpikingPool2d``: spiking ``p x p`` pooling (stride ``p``) trained with HM2-BP
(``docs/algorithm.md``, "Convolution and pooling").

Forward ("Neuron model"): LIF neurons driven by the number of their window's input spikes at
:math:`t-1` (:func:`hm2bp.functional.forward.pool_forward`); official pooling compares against
:math:`\nu - 10^{-6}`. Backward: :math:`g_i = (g_{o(i)}/d)\,\rho_{o(i),i}`
(:func:`hm2bp.functional.conv.pool_hm2bp_backward`, or its event form in ``conv_grad``). Takes and
returns :class:`~hm2bp.layers.spikes.Spikes` like every layer.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hm2bp.errors import ConfigError, InputError
from hm2bp.functional import HM2BPRule, LIFParams
from hm2bp.functional.conv import POOL_RULES, pool_hm2bp_backward
from hm2bp.functional.conv_grad import CONV_MEMORY_BUDGET, input_events, pool_hm2bp_backward_events
from hm2bp.functional.forward import BLOCK, pool_forward
from hm2bp.functional.live import LiveSamples
from hm2bp.layers.conv import _check_input
from hm2bp.layers.neurons import NeuronLayer
from hm2bp.layers.spikes import Spikes


class _HM2BPPool(torch.autograd.Function):
    """Counts in, ``(counts, bool spike trains, spike index)`` out; only the counts are differentiable.

    Takes tensors, the frozen records ``neuron`` and ``psp_kernel`` and plain options (never the module).
    """

    @staticmethod
    def forward(ctx, counts_in, spikes_in, in_index, neuron, psp_kernel, window, divisor, effect_ratio, dtype,
                memory_budget, block):  # noqa: D401 - autograd signature
        out, counts, index, out_index, sparse = pool_forward(spikes_in, window, neuron, dtype, input_index=in_index,
                                                             block=block)
        ctx.psp_kernel, ctx.window, ctx.divisor, ctx.effect_ratio = psp_kernel, window, divisor, effect_ratio
        ctx.memory_budget = memory_budget
        ctx.sparse = sparse
        ctx.save_for_backward(spikes_in, out, counts_in, counts, index, out_index)
        ctx.mark_non_differentiable(out, out_index)
        return counts, out, out_index

    @staticmethod
    def backward(ctx, grad_counts, _grad_spikes, _grad_index):
        pre, post, counts_in, counts, index, out_index = ctx.saved_tensors
        none = (None,) * 10
        if not ctx.needs_input_grad[0]:
            return (None, *none)
        live = LiveSamples.of(grad_counts)
        if live is not None:  # samples without error pass back zeros: run the rest (functional/live.py)
            pre, post, index, out_index = live.trains(pre, post, index, out_index)
            counts_in, counts, grad_counts = live.rows(counts_in), live.rows(counts), live.rows(grad_counts)
        if not ctx.sparse:
            grad_in = pool_hm2bp_backward(pre, post, grad_counts, ctx.window, ctx.psp_kernel, divisor=ctx.divisor,
                                          effect_ratio=ctx.effect_ratio)
        else:
            T, B, C, H, W = pre.shape
            grad_in = pool_hm2bp_backward_events(
                input_events(index, T, B, C * H * W), out_index, C, (H, W), grad_counts, ctx.window, ctx.psp_kernel,
                divisor=ctx.divisor, o_in=counts_in.reshape(B, C, H, W), o_out=counts, effect_ratio=ctx.effect_ratio,
                memory_budget=ctx.memory_budget,
            )
        return (grad_in if live is None else live.scatter(grad_in), *none)


class SpikingPool2d(NeuronLayer):
    """Spiking ``p x p`` pooling (stride ``p``): LIF neurons driven by the sum of their window.

    No parameters. Backward ("Convolution and pooling"): :math:`g_i = (g_{o(i)}/p^2)\\,\\rho_{o(i),i}` with
    ``pool_rule="official"``, or :math:`g_{o(i)}/\\nu_{pool}` in place of :math:`g/p^2` with
    ``pool_rule="threshold"`` (what the fully connected rule's ``delta = g / nu`` would give). :math:`\\rho = e_{o|i}/o_i` when both fire,
    else 1; plain 1 with ``effect_ratio=False``.

    Args:
        kernel_size: ``p`` (official 2).
        neuron: the neurons' constants and S-PSP convention (of :math:`\\rho`), a
            :class:`~hm2bp.functional.LIFParams`; a bare number is the threshold :math:`\\nu`
            (official CNN: pool1 2, pool2 4) with the official other constants. Required.
        rule: a :class:`~hm2bp.functional.HM2BPRule`; pooling reads its ``effect_ratio`` only.
        pool_rule: ``"official"`` or ``"threshold"`` (above).
        check_inputs: check the values of every tensor input (0/1 spikes); ``False`` skips it.

    Shapes: ``[T, B, C, H, W]`` -> ``[T, B, C, H//p, W//p]`` in the input's (floating) dtype.
    """

    def __init__(
        self,
        kernel_size: int = 2,
        neuron: LIFParams | float | None = None,
        rule: HM2BPRule | None = None,
        *,
        pool_rule: str = "official",
        check_inputs: bool = True,
    ) -> None:
        if neuron is None:
            raise ConfigError("SpikingPool2d needs a positive threshold (official pool1 2, pool2 4), got None")
        super().__init__(neuron, rule or HM2BPRule())
        if isinstance(kernel_size, bool) or kernel_size <= 0:
            raise ConfigError(f"SpikingPool2d kernel_size must be a positive integer, got {kernel_size}")
        if pool_rule not in POOL_RULES:
            raise ConfigError(f"pool_rule must be one of {POOL_RULES}, got {pool_rule!r}")
        self.check_inputs = bool(check_inputs)
        self.kernel_size = int(kernel_size)
        self.pool_rule = pool_rule
        self.block = BLOCK  # time steps per block of the forward simulation
        self.memory_budget = CONV_MEMORY_BUDGET  # bytes per block of samples in the backward

    @property
    def effect_ratio(self) -> bool:
        """Whether the error to the inputs is weighted by :math:`\\rho` (the rule's ``effect_ratio``)."""
        return self.rule.effect_ratio

    @property
    def backward_divisor(self) -> float:
        """``p**2`` (official) or ``nu_pool`` (``pool_rule="threshold"``)."""
        return float(self.kernel_size**2) if self.pool_rule == "official" else self.threshold

    def output_shape(self, in_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = in_shape
        return (c, h // self.kernel_size, w // self.kernel_size)

    def forward(self, x: "Tensor | Spikes", target: Tensor | None = None) -> "Tensor | Spikes":
        """``x`` :class:`Spikes` (``[T, B, C, H, W]``) -> :class:`Spikes` (``[T, B, C, H//p, W//p]``);
        or a tensor of 0/1 spikes (values checked unless ``check_inputs`` is off) -> float trains in
        the input's floating dtype (else the default). The LIF state is in the dtype of the input
        counts (else of floating trains, else the default). ``target`` is unused."""
        if isinstance(x, Spikes):
            return self._spikes(x)
        _check_input(x, None, "SpikingPool2d", self.check_inputs)
        return self._spikes(Spikes.of(x)).float_trains()

    def _spikes(self, x: Spikes) -> Spikes:
        _check_input(x.trains, None, "SpikingPool2d", False)
        if min(x.shape[3:]) < self.kernel_size:
            raise InputError(
                f"SpikingPool2d: input {tuple(x.shape[3:])} is smaller than the pool size {self.kernel_size}")
        if x.counts is not None:
            dtype = x.counts.dtype
        else:
            dtype = x.trains.dtype if x.trains.is_floating_point() else torch.get_default_dtype()
        counts, trains, index = _HM2BPPool.apply(
            x.counts, x.trains.detach(), x.index, self.neuron, self.psp_kernel, self.kernel_size,
            self.backward_divisor, self.effect_ratio, dtype, self.memory_budget, self.block,
        )
        return Spikes(trains, counts, index)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, threshold={self.threshold:g}, psp={self.psp!r}, pool_rule={self.pool_rule!r}"
