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

from hm2bp.checks import check_labels, check_spikes, number
from hm2bp.errors import ConfigError, InputError
from hm2bp.functional import HM2BPRule, LIFParams, LinearForward, hm2bp_backward
from hm2bp.functional.current import as_uint8
from hm2bp.functional.forward import BLOCK, linear_forward
from hm2bp.functional.spsp import InputEvents
from hm2bp.layers.neurons import NeuronLayer, neuron_params, psp_option
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
        ctx.rule = rule
        ctx.has_bias = bias is not None
        pre = spikes_in if spikes_in.dtype in (torch.bool, torch.uint8) else spikes_in.to(torch.uint8)
        ctx.save_for_backward(pre, out, weight, bias, target, counts_in, counts, events, out_index)
        ctx.mark_non_differentiable(out, out_index)
        return counts, out, out_index

    @staticmethod
    def backward(ctx, grad_counts, _grad_spikes, _grad_index):
        pre, post, weight, bias, target, counts_in, counts, events, out_index = ctx.saved_tensors
        pre_events = None
        if events is not None:
            pre_events = InputEvents.from_flat(events, tuple(pre.shape))
            if counts_in is None:  # data input: its counts from the gathered events + the last step
                per_sample = pre[0].numel()
                counts_in = torch.bincount((events % per_sample).long(), minlength=per_sample).view(pre.shape[1:])
                counts_in = counts_in.to(weight.dtype) + as_uint8(pre[-1]).to(weight.dtype)
        forward = LinearForward(pre, post, counts_in=counts_in, counts_out=counts, pre_events=pre_events,
                                post_index=out_index, target=target)
        gw, gin, gb = hm2bp_backward(forward, weight, grad_counts, ctx.rule, bias=bias if ctx.has_bias else None,
                                     need_input_grad=ctx.needs_input_grad[0])
        return gin, gw, gb, None, None, None, None, None, None, None, None


class SpikingLinear(NeuronLayer):
    """Fully connected LIF layer whose backward pass is HM2-BP.

    Args:
        in_features, out_features: sizes; ``weight`` is ``[out, in]`` like ``nn.Linear``.
        threshold: firing threshold :math:`\\nu` (official MNIST: hidden 20, output 8).
        tau_m, tau_s, refractory: neuron constants in steps (defaults: :class:`~hm2bp.functional.LIFParams`,
            the official 64, 8, 2; "Neuron model").
        lateral_inhibition: ``w0`` of fixed all-to-all inhibition ``-w0 (1 - I)`` on the layer's own
            spikes at ``t-1`` ("Lateral inhibition"; official output layers: 1).
        bias: add a trainable bias current (the official program has none).
        psp: S-PSP convention, ``"exact"`` (default), ``"official"`` or ``"paper"``
            (``docs/algorithm.md``, "Spike-train-level PSP"); ``spsp`` is its old name (an alias).
        effect_ratio: propagate errors through ``W∘ρ`` (effect ratio, "Weight update"; official on) instead of ``W``.
        side_effect: weight-gradient factor ``1 + σ`` (side effect, "Weight update").
        lateral_factor: output-layer factor ``γ`` ("Lateral inhibition"); needs ``lateral_inhibition > 0``.
        target_injection: desired count whose regular train replaces a silent target's spikes in
            backward ("Weight update", target injection; official 35). ``None`` disables it.
        silent_spsp, silent_side_ratio: official silent-neuron constants 0.1 and 0.5 ("Weight update").
        reg_lambda, reg_beta, reg_limit: weight-norm regulariser ("Weight update"; official MNIST 10, 0.04, 8).
        threshold_eps: spike when ``v > threshold - threshold_eps`` (official FC: 1e-6).
        init_range: weights start U(-init_range, init_range) (official "Bernoulli" init: 1).
        check_inputs: check every ``forward`` input (0/1 spikes ``[T >= 2, B >= 1, in]``, labels in
            range; one reduction each, :mod:`hm2bp.checks`); ``False`` skips the checks.
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
        psp: str | None = None,
        effect_ratio: bool = True,
        side_effect: bool = True,
        lateral_factor: bool = True,
        target_injection: float | None = None,
        silent_spsp: float = 0.1,
        silent_side_ratio: float = 0.5,
        reg_lambda: float = 0.0,
        reg_beta: float = 0.0,
        reg_limit: float = 8.0,
        threshold_eps: float = LIFParams.threshold_eps,
        init_range: float = 1.0,
        check_inputs: bool = True,
        spsp: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(in_features, bool) or isinstance(out_features, bool) or min(in_features, out_features) <= 0:
            raise ConfigError(f"SpikingLinear sizes must be positive integers, got {in_features} -> {out_features}")
        _check_rule_numbers("SpikingLinear", lateral_inhibition=lateral_inhibition, target_injection=target_injection,
                            silent_spsp=silent_spsp, silent_side_ratio=silent_side_ratio, reg_lambda=reg_lambda,
                            reg_beta=reg_beta, reg_limit=reg_limit, init_range=init_range)
        self.check_inputs = bool(check_inputs)
        self.neuron = neuron_params("SpikingLinear", threshold, tau_m, tau_s, refractory, threshold_eps)
        self.psp = psp_option("SpikingLinear", psp, spsp)
        self.in_features = in_features
        self.out_features = out_features
        self.lateral_inhibition = float(lateral_inhibition)
        self.rule = HM2BPRule(
            threshold=self.threshold,
            psp_kernel=self.neuron.psp_kernel(self.psp),
            effect_ratio=effect_ratio,
            side_effect=side_effect,
            silent_spsp=silent_spsp,
            silent_side_ratio=silent_side_ratio,
            lateral_inhibition=self.lateral_inhibition,
            lateral_factor=lateral_factor and self.lateral_inhibition != 0.0,
            target_injection=target_injection,
            reg_lambda=reg_lambda,
            reg_beta=reg_beta,
            reg_limit=reg_limit,
        )
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-init_range, init_range))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.init_range = init_range
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


def _check_rule_numbers(name: str, *, lateral_inhibition=0.0, target_injection=None, silent_spsp=0.1,
                        silent_side_ratio=0.5, reg_lambda=0.0, reg_beta=0.0, reg_limit=8.0, init_range=1.0) -> None:
    """Finite, in-range HM2-BP options of a layer (one :class:`ConfigError` naming the option)."""
    number(f"{name} lateral_inhibition", lateral_inhibition)
    number(f"{name} target_injection", target_injection, low=0, low_open=True, none_ok=True,
           hint="the desired count of the injected train (model.network.init_args.target_injection), or null")
    number(f"{name} silent_spsp", silent_spsp)
    number(f"{name} silent_side_ratio", silent_side_ratio)
    for key, value in (("reg_lambda", reg_lambda), ("reg_beta", reg_beta), ("reg_limit", reg_limit)):
        number(f"{name} {key}", value, low=0, hint=f"model.network.init_args.{key} in a config")
    number(f"{name} init_range", init_range, low=0, low_open=True)
