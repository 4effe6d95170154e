r"""``SpikingLinear``: a fully connected layer of LIF neurons trained with HM2-BP.

Forward (spec §1.2): :math:`I[t] = W s_{in}[t-1] (+ b)`, gathered over the input spikes
(``functional.current``), then the LIF scan (``functional.lif.LIFScan``), in blocks of steps.
Backward (spec §3.4): the HM2-BP rule of :func:`hm2bp.functional.hm2bp_backward` under the
count-level gradient semantics of the design (``dE/do`` arrives broadcast over time;
``dE/do_in`` leaves broadcast over time). Shapes: input ``[T, B, in_features]`` (0/1, any dtype)
-> output ``[T, B, out_features]`` (0/1 in the weight's dtype). Only the 1-byte spike trains and
the int32 indices of the input spikes are kept for backward.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from hm2bp.checks import check_labels, check_spikes, number
from hm2bp.errors import ConfigError, InputError
from hm2bp.functional import HM2BPRule, hm2bp_backward
from hm2bp.functional.current import MAX_SPARSE_DENSITY, as_uint8, gather_current, index_dtype, spike_index
from hm2bp.functional.lif import LIFScan
from hm2bp.functional.spsp import InputEvents
from hm2bp.layers.neurons import set_neuron_constants


class _HM2BPLinear(torch.autograd.Function):
    """Counts in, ``(counts, spike trains)`` out; the trains are not differentiable.

    Under the count-level semantics of HM2-BP the only gradient that crosses a layer is
    ``dE/do`` ``[B, N]``, so chained layers hand each other 1-byte trains plus a differentiable
    ``[B, N]`` count tensor instead of a float ``[T, B, N]`` train.
    """

    @staticmethod
    def forward(ctx, counts_in, weight, bias, spikes_in, lateral, target, layer, training, in_index):  # noqa: D401
        # training: a graph is recorded (the caller knows; grad mode is off in here)
        out, counts, events, out_index = layer.simulate(
            spikes_in, weight, bias, lateral, return_events=training, input_index=in_index
        )
        ctx.layer = layer
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
        gw, gin, gb = hm2bp_backward(
            pre,
            post,
            weight,
            grad_counts,
            ctx.layer.rule,
            target=target,
            need_input_grad=ctx.needs_input_grad[0],
            bias=bias if ctx.has_bias else None,
            o_in=counts_in,
            o_out=counts,
            pre_events=pre_events,
            post_index=out_index,
        )
        return gin, gw, gb, None, None, None, None, None, None


class _Trains(torch.autograd.Function):
    """Float spike trains ``[T, B, N]`` whose gradient is taken at the count level:
    ``dE/do = grad[t]`` for every ``t`` (their mean over time)."""

    @staticmethod
    def forward(ctx, spikes, counts):  # noqa: D401 - autograd signature
        return as_uint8(spikes).to(counts.dtype)

    @staticmethod
    def backward(ctx, grad):
        return None, grad.mean(0)


def spikes_with_counts(trains: Tensor) -> tuple[Tensor, Tensor | None]:
    """``(spikes, counts)`` of a float train ``[T, B, ...]`` from a layer that is not count-level
    (the data, a conv or pool layer): the counts carry its gradient when it has one."""
    if trains.requires_grad:
        return trains.detach(), trains.sum(0)
    return trains, None


def as_trains(spikes: Tensor, counts: Tensor | None) -> Tensor:
    """Float ``[T, B, N]`` trains of a count-level layer, differentiable through ``counts``."""
    if counts is None or not counts.requires_grad:
        return as_uint8(spikes).to(counts.dtype if counts is not None else torch.get_default_dtype())
    return _Trains.apply(spikes, counts)


class SpikingLinear(nn.Module):
    """Fully connected LIF layer whose backward pass is HM2-BP.

    Args:
        in_features, out_features: sizes; ``weight`` is ``[out, in]`` like ``nn.Linear``.
        threshold: firing threshold :math:`\\nu` (official MNIST: hidden 20, output 8).
        tau_m, tau_s, refractory: neuron constants in steps (official 64, 8, 2; §1.3).
        lateral_inhibition: ``w0`` of fixed all-to-all inhibition ``-w0 (1 - I)`` on the layer's own
            spikes at ``t-1`` (§3.5; official output layers: 1).
        bias: add a trainable bias current (the official program has none, §1.2).
        spsp: S-PSP convention, ``"exact"`` (H16, default), ``"official"`` (§2.3) or ``"paper"``.
        effect_ratio: propagate errors through ``W∘ρ`` (H12a, official on) instead of ``W``.
        side_effect: weight-gradient factor ``1 + σ`` (H11, §3.4 step 9).
        lateral_factor: output-layer factor ``γ`` (H14); needs ``lateral_inhibition > 0``.
        target_injection: desired count whose regular train replaces a silent target's spikes in
            backward (§3.4 step 4; official 35). ``None`` disables it.
        silent_spsp, silent_side_ratio: official silent-neuron constants 0.1 and 0.5 (§2.3, §3.4).
        reg_lambda, reg_beta, reg_limit: weight-norm regulariser (H17; official MNIST 10, 0.04, 8).
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
        tau_m: float = 64.0,
        tau_s: float = 8.0,
        refractory: int = 2,
        lateral_inhibition: float = 0.0,
        bias: bool = False,
        spsp: str = "exact",
        effect_ratio: bool = True,
        side_effect: bool = True,
        lateral_factor: bool = True,
        target_injection: float | None = None,
        silent_spsp: float = 0.1,
        silent_side_ratio: float = 0.5,
        reg_lambda: float = 0.0,
        reg_beta: float = 0.0,
        reg_limit: float = 8.0,
        threshold_eps: float = 1e-6,
        init_range: float = 1.0,
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(in_features, bool) or isinstance(out_features, bool) or min(in_features, out_features) <= 0:
            raise ConfigError(f"SpikingLinear sizes must be positive integers, got {in_features} -> {out_features}")
        _check_rule_numbers("SpikingLinear", lateral_inhibition=lateral_inhibition, target_injection=target_injection,
                            silent_spsp=silent_spsp, silent_side_ratio=silent_side_ratio, reg_lambda=reg_lambda,
                            reg_beta=reg_beta, reg_limit=reg_limit, init_range=init_range)
        self.check_inputs = bool(check_inputs)
        kernel = set_neuron_constants(self, threshold, tau_m, tau_s, refractory, threshold_eps, spsp)
        self.in_features = in_features
        self.out_features = out_features
        self.lateral_inhibition = float(lateral_inhibition)
        self.rule = HM2BPRule(
            threshold=self.threshold,
            kernel=kernel,
            effect_ratio=effect_ratio,
            side_effect=side_effect,
            silent_spsp=silent_spsp,
            silent_side_ratio=silent_side_ratio,
            lateral_strength=self.lateral_inhibition,
            lateral_factor=lateral_factor and self.lateral_inhibition != 0.0,
            target_injection=target_injection,
            reg_lambda=reg_lambda,
            reg_beta=reg_beta,
            reg_limit=reg_limit,
        )
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-init_range, init_range))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.init_range = init_range
        self.block = 16  # time steps per block of the forward simulation
        # Fixed recurrent/lateral matrix W_lat[post, pre] (not trained, not in state_dict).
        self.lateral: Tensor | None = None
        if self.lateral_inhibition != 0.0:
            eye = torch.eye(out_features)
            self.lateral = -self.lateral_inhibition * (1.0 - eye)

    def set_recurrent(self, matrix: Tensor | None) -> None:
        """Use a fixed recurrent matrix ``[out, out]`` (e.g. a reservoir, spec §10.2) instead."""
        if matrix is not None and tuple(matrix.shape) != (self.out_features, self.out_features):
            raise InputError(f"recurrent matrix must be {(self.out_features,)*2}, got {tuple(matrix.shape)}")
        self.lateral = matrix

    def simulate(
        self,
        spikes: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        lateral: Tensor | None,
        *,
        return_events: bool = False,
        input_index: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """The forward simulation: ``[T, B, in]`` 0/1 spikes -> ``(spikes [T, B, out] bool,
        counts [B, out], events, out_index)``.

        Runs in blocks of ``self.block`` steps: the block's current ``I[t] = W s[t-1] (+ b)``
        (event-driven, ``functional.current``) feeds the LIF scan, so no ``[T, B, out]`` float
        tensor is ever formed. The input spikes are listed once (``nonzero``) and each block's
        events are a slice of that list; above ``MAX_SPARSE_DENSITY`` the dense GEMM is used. With
        ``return_events``, ``events`` holds the flat indices of the input spikes that were
        gathered (every step but the last, whose spikes reach no current), or ``None`` on the
        dense path; the backward reuses them. ``input_index`` is the ascending flat index list of
        all input spikes when the previous layer has it; ``out_index`` is that list for the output
        spikes (for the next layer and this layer's backward).
        """
        T, B = spikes.shape[:2]
        out = torch.zeros(T, B, weight.shape[0], dtype=torch.bool, device=weight.device)
        scan = LIFScan(out, self.threshold, tau_m=self.tau_m, tau_s=self.tau_s, refractory=self.refractory,
                       lateral=lateral, threshold_eps=self.threshold_eps, dtype=weight.dtype)
        weight_t = weight.detach().t().contiguous()
        step = B * spikes.shape[-1]  # elements per time step of the input
        # the input spikes of steps 0 .. T-2 reach a current; one nonzero for all of them
        if T <= 1:
            index = None
        elif input_index is not None:  # the prefix of the list that falls in steps 0 .. T-2
            cut = torch.searchsorted(input_index, torch.tensor([(T - 1) * step], dtype=input_index.dtype,
                                                                device=input_index.device))
            index = input_index[: int(cut)]
        else:
            index = spike_index(spikes[: T - 1])
        sparse = index is not None and index.numel() <= MAX_SPARSE_DENSITY * (T - 1) * step
        if sparse:
            starts = torch.arange(0, T, self.block, device=index.device) * step
            bounds = torch.searchsorted(index, starts).tolist() + [index.numel()]
        for k, t0 in enumerate(range(1, T, self.block)):
            t1 = min(t0 + self.block, T)
            block = spikes[t0 - 1 : t1 - 1]
            if sparse:  # I[t] = W s[t-1], gathered
                current = gather_current(index[bounds[k] : bounds[k + 1]], block, weight_t, offset=(t0 - 1) * step)
            else:
                current = as_uint8(block).to(weight.dtype) @ weight_t
            if bias is not None:
                current += bias.detach()
            scan.run(t0, current)
        events = None
        if return_events and sparse:
            events = index.to(index_dtype(spikes.numel()))
        out_index = spike_index(out).to(index_dtype(out.numel()))
        return out, scan.counts, events, out_index

    def forward_counts(
        self, spikes: Tensor, counts: Tensor | None = None, target: Tensor | None = None, index: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Count-level forward: ``spikes`` ``[T, B, in]`` (0/1, any dtype) and their counts
        ``[B, in]`` (differentiable, or ``None`` for data) -> ``(bool spikes [T, B, out],
        counts [B, out], index)``. The gradient flows through the counts only. ``index`` (in
        and out): ascending flat indices of the spikes, handed from layer to layer so each
        train is listed once."""
        if spikes.dim() != 3 or spikes.shape[-1] != self.in_features:
            raise InputError(
                f"SpikingLinear expects spikes [T, B, {self.in_features}], got {tuple(spikes.shape)}"
            )
        lateral = None
        if self.lateral is not None:
            lateral = self.lateral.to(device=self.weight.device, dtype=self.weight.dtype)
        if not torch.is_grad_enabled():
            target = None
        training = torch.is_grad_enabled() and (
            self.weight.requires_grad or (counts is not None and counts.requires_grad)
            or (self.bias is not None and self.bias.requires_grad)
        )
        out_counts, out, out_index = _HM2BPLinear.apply(
            counts, self.weight, self.bias, spikes.detach(), lateral, target, self, training, index
        )
        return out, out_counts, out_index

    def forward(
        self,
        x: Tensor,
        target: Tensor | None = None,
        *,
        counts: Tensor | None = None,
        index: Tensor | None = None,
        count_level: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """``x`` ``[T, B, in]`` spikes -> ``[T, B, out]`` spikes in the weight's dtype;
        ``target`` ``[B]`` for injection/γ.

        With ``count_level=True`` this is :meth:`forward_counts` (``x`` 0/1 of any dtype, its
        ``counts`` and spike ``index``) returning ``(bool spikes, counts, index)``; networks chain
        layers that way.
        """
        if count_level:
            return self.forward_counts(x, counts, target, index)
        if self.check_inputs:
            check_spikes(x, "SpikingLinear")
            if target is not None:
                check_labels(target, self.out_features, x.shape[1], "SpikingLinear")
        spikes, in_counts = spikes_with_counts(x)
        out, out_counts, _ = self.forward_counts(spikes, in_counts, target)
        return as_trains(out, out_counts)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, threshold={self.threshold:g}, spsp={self.spsp!r}, "
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
