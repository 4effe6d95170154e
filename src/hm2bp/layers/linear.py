r"""``SpikingLinear``: a fully connected layer of LIF neurons trained with HM2-BP.

Forward (``docs/algorithm.md``, "Neuron model"): :math:`I[t] = W s_{in}[t-1] (+ b)`, gathered over
the input spikes, then the LIF scan, in blocks of steps (:func:`hm2bp.functional.forward.linear_forward`).
Backward ("Weight update"): the HM2-BP rule of :func:`hm2bp.functional.hm2bp_backward`. Layers hand
each other :class:`~hm2bp.layers.spikes.Spikes` (1-byte trains, differentiable counts that carry
``dE/do``, the spike index); a plain tensor ``[T, B, in_features]`` (0/1, any dtype) in gives float
trains ``[T, B, out_features]`` (0/1 in the weight's dtype) out. Only the 1-byte spike trains and
the int32 indices of the input spikes are kept for backward.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from hm2bp.checks import check_labels, check_spikes
from hm2bp.errors import ConfigError, InputError
from hm2bp.functional import HM2BPRule, LIFParams, LinearForward, hm2bp_backward
from hm2bp.functional.current import as_uint8
from hm2bp.functional.forward import BLOCK, linear_forward
from hm2bp.functional.live import LiveSamples
from hm2bp.functional.rule import regulariser_grad
from hm2bp.functional.spsp import InputEvents
from hm2bp.layers.neurons import NeuronLayer
from hm2bp.layers.spikes import Spikes


class _HM2BPLinear(torch.autograd.Function):
    """Counts in, ``(counts, spike trains, spike index)`` out; only the counts are differentiable.

    Takes tensors and the frozen records ``neuron`` and ``rule`` (never the module). Under the
    count-level semantics of HM2-BP the only gradient that crosses a layer is ``dE/do`` ``[B, N]``.
    """

    @staticmethod
    def forward(ctx, counts_in, weight, bias, spikes_in, in_index, lateral, target, neuron, rule, block,
                training):  # noqa: D401 - autograd signature
        # training: a graph is recorded (the caller knows; grad mode is off in here)
        out, counts, events, out_index = linear_forward(spikes_in, weight, bias, neuron, lateral=lateral,
                                                        input_index=in_index, return_events=training, block=block)
        ctx.neuron, ctx.rule = neuron, rule
        ctx.has_bias = bias is not None
        pre = spikes_in if spikes_in.dtype in (torch.bool, torch.uint8) else spikes_in.to(torch.uint8)
        ctx.save_for_backward(pre, out, weight, bias, target, counts_in, counts, events, out_index)
        ctx.mark_non_differentiable(out, out_index)
        return counts, out, out_index

    @staticmethod
    def backward(ctx, grad_counts, _grad_spikes, _grad_index):
        pre, post, weight, bias, target, counts_in, counts, events, out_index = ctx.saved_tensors
        live = LiveSamples.of(grad_counts)
        if live is not None:  # samples without error add exact zeros: run the rest (functional/live.py)
            pre, post, events, out_index = live.trains(pre, post, events, out_index)
            target = live.rows(target)
            counts_in, counts, grad_counts = live.rows(counts_in), live.rows(counts), live.rows(grad_counts)
        pre_events = None
        if events is not None:
            pre_events = InputEvents.from_flat(events, tuple(pre.shape))
            if counts_in is None:  # data input: its counts from the gathered events + the last step
                per_sample = pre[0].numel()
                counts_in = torch.bincount((events % per_sample).long(), minlength=per_sample).view(pre.shape[1:])
                counts_in = counts_in.to(weight.dtype) + as_uint8(pre[-1]).to(weight.dtype)
        forward = LinearForward(pre, post, counts_in=counts_in, counts_out=counts, pre_events=pre_events,
                                post_index=out_index, target=target)
        gw, gin, gb = hm2bp_backward(forward, weight, grad_counts, ctx.neuron, ctx.rule, bias=bias if ctx.has_bias else None,
                                     need_input_grad=ctx.needs_input_grad[0])
        if live is not None:  # the regulariser once per sample of the whole batch; no error to the dropped
            gw = gw + live.dropped * regulariser_grad(weight, ctx.rule)
            gin = live.scatter(gin)
        return gin, gw, gb, None, None, None, None, None, None, None, None


class SpikingLinear(NeuronLayer):
    """Fully connected LIF layer whose backward pass is HM2-BP.

    Args:
        in_features, out_features: sizes; ``weight`` is ``[out, in]`` like ``nn.Linear``.
        neuron: the neurons' constants and S-PSP convention, a :class:`~hm2bp.functional.LIFParams`
            ("Neuron model", "Spike-train-level PSP"); a bare number is the threshold :math:`\\nu`
            with the official other constants (64, 8, 2, ``threshold_eps`` 1e-6, ``psp="exact"``).
        rule: the HM2-BP rule, a :class:`~hm2bp.functional.HM2BPRule` (default: its defaults;
            ``HM2BPRule.official(output=True)`` for the authors' output layer). Its
            ``lateral_inhibition`` ``w0`` also sets the forward's fixed all-to-all inhibition
            ``-w0 (1 - I)`` on the layer's own spikes at ``t-1`` ("Lateral inhibition").
        bias: add a trainable bias current (the official program has none).
        init_range: weights start U(-init_range, init_range) (official "Bernoulli" init: 1).
        check_inputs: check every ``forward`` input (0/1 spikes ``[T >= 2, B >= 1, in]``, labels in
            range; one reduction each, :mod:`hm2bp.checks`); ``False`` skips the checks.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        neuron: LIFParams | float,
        rule: HM2BPRule | None = None,
        *,
        bias: bool = False,
        init_range: float = 1.0,
        check_inputs: bool = True,
    ) -> None:
        super().__init__(neuron, rule or HM2BPRule())
        if isinstance(in_features, bool) or isinstance(out_features, bool) or min(in_features, out_features) <= 0:
            raise ConfigError(f"SpikingLinear sizes must be positive integers, got {in_features} -> {out_features}")
        self.check_inputs = bool(check_inputs)
        self.in_features = in_features
        self.out_features = out_features
        self.lateral_inhibition = float(self.rule.lateral_inhibition)
        self.weight = self.init_weight((out_features, in_features), init_range)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.block = BLOCK  # time steps per block of the forward simulation
        # Fixed recurrent/lateral matrix W_lat[post, pre]: a non-persistent buffer (not trained, not in
        # state_dict; .to() and .double() move it with the weights)
        lateral = None
        if self.lateral_inhibition != 0.0:
            lateral = -self.lateral_inhibition * (1.0 - torch.eye(out_features))
        self.register_buffer("lateral", lateral, persistent=False)

    def set_recurrent(self, matrix: Tensor | None) -> None:
        """Use a fixed recurrent matrix ``[out, out]`` (e.g. a reservoir) instead."""
        if matrix is not None and tuple(matrix.shape) != (self.out_features, self.out_features):
            raise InputError(f"recurrent matrix must be {(self.out_features,)*2}, got {tuple(matrix.shape)}")
        if matrix is not None:
            matrix = matrix.detach().to(device=self.weight.device, dtype=self.weight.dtype)
        self.lateral = matrix

    def forward(self, x: "Tensor | Spikes", target: Tensor | None = None) -> "Tensor | Spikes":
        """``x`` :class:`Spikes` (``[T, B, in]``) -> :class:`Spikes` (``[T, B, out]``, bool trains,
        counts carrying ``dE/do``); or a tensor ``[T, B, in]`` of 0/1 spikes (checked unless
        ``check_inputs`` is off; a differentiable float train passes ``dE/do`` back through its sum
        over time) -> float trains ``[T, B, out]`` in the weight's dtype. ``target`` ``[B]``: labels
        for target injection and the lateral factor."""
        if isinstance(x, Spikes):
            return self._spikes(x, target)
        if self.check_inputs:
            check_spikes(x, "SpikingLinear")
            if target is not None:
                check_labels(target, self.out_features, x.shape[1], "SpikingLinear")
        return self._spikes(Spikes.of(x), target).float_trains()

    def _spikes(self, x: Spikes, target: Tensor | None) -> Spikes:
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise InputError(f"SpikingLinear expects spikes [T, B, {self.in_features}], got {tuple(x.shape)}")
        lateral = None
        if self.lateral is not None:
            lateral = self.lateral.to(device=self.weight.device, dtype=self.weight.dtype)
        if not torch.is_grad_enabled():
            target = None
        training = torch.is_grad_enabled() and (
            self.weight.requires_grad or (x.counts is not None and x.counts.requires_grad)
            or (self.bias is not None and self.bias.requires_grad)
        )
        counts, trains, index = _HM2BPLinear.apply(
            x.counts, self.weight, self.bias, x.trains.detach(), x.index, lateral, target, self.neuron, self.rule,
            self.block, training,
        )
        return Spikes(trains, counts, index)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, threshold={self.threshold:g}, psp={self.psp!r}, "
            f"lateral_inhibition={self.lateral_inhibition:g}, bias={self.bias is not None}"
        )

