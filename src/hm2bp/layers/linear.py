r"""``SpikingLinear``: a fully connected layer of LIF neurons trained with HM2-BP.

Forward (spec §1.2): :math:`I[t] = W s_{in}[t-1] (+ b)`, then the LIF scan of
:func:`hm2bp.functional.lif_simulate`. Backward (spec §3.4): the HM2-BP rule of
:func:`hm2bp.functional.hm2bp_backward` under the count-level gradient semantics of the design
(``dE/do`` arrives broadcast over time; ``dE/do_in`` leaves broadcast over time).
Shapes: input ``[T, B, in_features]`` (0/1, any dtype) -> output ``[T, B, out_features]``
(0/1 in the weight's dtype). Only 1-byte spike trains are kept for backward.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from hm2bp.functional import HM2BPRule, hm2bp_backward, lif_simulate
from hm2bp.layers.neurons import set_neuron_constants


class _HM2BPLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, lateral, target, layer):  # noqa: D401 - autograd signature
        spikes_in = x.detach()
        T = spikes_in.shape[0]
        current = weight.new_zeros(T, spikes_in.shape[1], weight.shape[0])  # [T, B, out]
        if T > 1:
            current[1:] = layer.input_current(spikes_in[:-1], weight)
            if bias is not None:
                current[1:] += bias
        out = lif_simulate(
            current,
            layer.threshold,
            tau_m=layer.tau_m,
            tau_s=layer.tau_s,
            refractory=layer.refractory,
            lateral=lateral,
            threshold_eps=layer.threshold_eps,
        )
        ctx.layer = layer
        ctx.has_bias = bias is not None
        # the current is kept for the side-effect T-PSP: it replaces a second [T*B, in] x [in, out] GEMM
        keep = current if layer.rule.side_effect else None
        ctx.save_for_backward(spikes_in.to(torch.uint8), out, weight, bias, target, keep)
        return out.to(weight.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        pre, post, weight, bias, target, current = ctx.saved_tensors
        layer = ctx.layer
        grad_counts = grad_out.mean(0)  # [B, out]: dE/do, identical at every t
        gw, gin, gb = hm2bp_backward(
            pre,
            post,
            weight,
            grad_counts,
            layer.rule,
            target=target,
            need_input_grad=ctx.needs_input_grad[0],
            bias=bias if ctx.has_bias else None,
            ff_current=current,
        )
        grad_x = None
        if gin is not None:
            grad_x = gin.unsqueeze(0).expand(pre.shape[0], *gin.shape).to(grad_out.dtype)
        return grad_x, gw, gb, None, None, None


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
    ) -> None:
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"SpikingLinear sizes must be positive, got {in_features} -> {out_features}")
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
        # Fixed recurrent/lateral matrix W_lat[post, pre] (not trained, not in state_dict).
        self.lateral: Tensor | None = None
        if self.lateral_inhibition != 0.0:
            eye = torch.eye(out_features)
            self.lateral = -self.lateral_inhibition * (1.0 - eye)

    def set_recurrent(self, matrix: Tensor | None) -> None:
        """Use a fixed recurrent matrix ``[out, out]`` (e.g. a reservoir, spec §10.2) instead."""
        if matrix is not None and tuple(matrix.shape) != (self.out_features, self.out_features):
            raise ValueError(f"recurrent matrix must be {(self.out_features,)*2}, got {tuple(matrix.shape)}")
        self.lateral = matrix

    @staticmethod
    def input_current(spikes: Tensor, weight: Tensor) -> Tensor:
        """``W s`` for ``spikes`` ``[T, B, in]`` -> ``[T, B, out]`` in the weight's dtype."""
        return spikes.to(weight.dtype) @ weight.t()

    def forward(self, x: Tensor, target: Tensor | None = None) -> Tensor:
        """``x`` ``[T, B, in]`` spikes -> ``[T, B, out]`` spikes; ``target`` ``[B]`` for injection/γ."""
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"SpikingLinear expects spikes [T, B, {self.in_features}], got {tuple(x.shape)}"
            )
        lateral = None
        if self.lateral is not None:
            lateral = self.lateral.to(device=self.weight.device, dtype=self.weight.dtype)
        if not torch.is_grad_enabled():
            target = None
        return _HM2BPLinear.apply(x, self.weight, self.bias, lateral, target, self)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, threshold={self.threshold:g}, spsp={self.spsp!r}, "
            f"lateral_inhibition={self.lateral_inhibition:g}, bias={self.bias is not None}"
        )
