r"""``SpikingConv2d`` and ``SpikingPool2d``: LIF feature maps trained with HM2-BP (spec §3.6).

Forward (spec §1.2): input current :math:`I[t] = \mathrm{conv2d}(s_{in}[t-1], W)` (cross-correlation,
valid padding by default), or the sum of each :math:`p \times p` window of :math:`s_{in}[t-1]` for
pooling neurons (fixed unit weights, stride :math:`p`), then the LIF scan of
:func:`hm2bp.functional.lif_simulate` on ``[T, B, C, H, W]``. Backward: the HM2-BP rule of
:mod:`hm2bp.functional.conv` under the count-level gradient semantics of the design (``dE/do``
arrives broadcast over time; ``dE/do_in`` leaves broadcast over time). Only 1-byte spike trains
are kept for backward. Official thresholds compare against exactly :math:`\nu` for conv layers and
:math:`\nu - 10^{-6}` for pooling (spec §1.2 step 5).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from hm2bp.checks import check_spikes
from hm2bp.errors import ConfigError, InputError
from hm2bp.functional import HM2BPRule, lif_simulate
from hm2bp.functional.conv import (
    POOL_RULES,
    conv_hm2bp_backward,
    conv_input_current,
    conv_output_shape,
    pool_hm2bp_backward,
    pool_input_current,
)
from hm2bp.layers.neurons import set_neuron_constants


def _check_input(x: Tensor, channels: int | None, name: str, values: bool) -> None:
    """Shape ``[T, B, C, H, W]`` (always); 0/1 values, T >= 2, B >= 1 when ``values``."""
    if values:
        check_spikes(x, name, min_dim=5)
    if x.dim() != 5 or (channels is not None and x.shape[2] != channels):
        raise InputError(f"{name} expects spikes [T, B, {channels or 'C'}, H, W], got {tuple(x.shape)}")


class _HM2BPConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, layer):  # noqa: D401 - autograd signature
        spikes_in = x.detach()
        T, B = spikes_in.shape[:2]
        shape = conv_output_shape(tuple(spikes_in.shape[2:]), layer.out_channels, layer.kernel_size,
                                  layer.stride, layer.padding)
        current = weight.new_zeros(T, B, *shape)  # [T, B, C_out, H', W']
        if T > 1:
            conv_input_current(spikes_in[:-1], weight, bias, stride=layer.stride, padding=layer.padding,
                               out=current[1:])
        out = lif_simulate(current, layer.threshold, tau_m=layer.tau_m, tau_s=layer.tau_s,
                           refractory=layer.refractory, threshold_eps=layer.threshold_eps)
        del current
        ctx.layer = layer
        ctx.has_bias = bias is not None
        ctx.save_for_backward(spikes_in.to(torch.uint8), out, weight, bias)
        return out.to(weight.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        pre, post, weight, bias = ctx.saved_tensors
        layer = ctx.layer
        grad_counts = grad_out.mean(0)  # [B, C_out, H', W']: dE/do, identical at every t
        gw, gin, gb = conv_hm2bp_backward(
            pre, post, weight, grad_counts, layer.rule, stride=layer.stride, padding=layer.padding,
            bias=bias if ctx.has_bias else None, need_input_grad=ctx.needs_input_grad[0],
        )
        grad_x = None
        if gin is not None:
            grad_x = gin.unsqueeze(0).expand(pre.shape[0], *gin.shape).to(grad_out.dtype)
        return grad_x, gw, gb, None


class SpikingConv2d(nn.Module):
    """2-D convolution of LIF neurons with shared kernels, trained with HM2-BP (spec §3.6).

    Args:
        in_channels, out_channels, kernel_size: ``weight`` is ``[out, in, k, k]`` like ``nn.Conv2d``.
        threshold: firing threshold :math:`\\nu` (official CNN: conv1 5, conv2 12).
        stride, padding: of the cross-correlation (official: 1, 0 = valid).
        tau_m, tau_s, refractory: neuron constants in steps (official 64, 8, 2; §1.3).
        bias: trainable per-channel bias current (the official program has none).
        spsp: S-PSP convention, ``"exact"`` (H16, default), ``"official"`` (§2.3) or ``"paper"``.
        effect_ratio: propagate errors through ``w ρ`` (H12a) instead of ``w``.
        side_effect: kernel-gradient factor ``1 + σ_o`` over the receptive field (H11).
        silent_spsp, silent_side_ratio: official silent-neuron constants 0.1 and 0.5 (§2.3, §3.4).
        reg_lambda, reg_beta, reg_limit: H17 regulariser per output kernel (mean over in, k, k);
            official CNN: off.
        threshold_eps: spike when ``v > threshold - threshold_eps`` (official conv: 0).
        init_range: kernels start U(-init_range, init_range) (official conv: 0.5).

    Shapes: ``[T, B, in_channels, H, W]`` (0/1, any dtype) -> ``[T, B, out_channels, H', W']``
    (0/1 in the weight's dtype).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        threshold: float,
        *,
        stride: int = 1,
        padding: int = 0,
        tau_m: float = 64.0,
        tau_s: float = 8.0,
        refractory: int = 2,
        bias: bool = False,
        spsp: str = "exact",
        effect_ratio: bool = True,
        side_effect: bool = True,
        silent_spsp: float = 0.1,
        silent_side_ratio: float = 0.5,
        reg_lambda: float = 0.0,
        reg_beta: float = 0.0,
        reg_limit: float = 8.0,
        threshold_eps: float = 0.0,
        init_range: float = 0.5,
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        from hm2bp.layers.linear import _check_rule_numbers

        _check_rule_numbers("SpikingConv2d", silent_spsp=silent_spsp, silent_side_ratio=silent_side_ratio,
                            reg_lambda=reg_lambda, reg_beta=reg_beta, reg_limit=reg_limit, init_range=init_range)
        self.check_inputs = bool(check_inputs)
        if min(in_channels, out_channels, kernel_size, stride) <= 0 or padding < 0:
            raise ConfigError(
                f"SpikingConv2d needs positive channels/kernel/stride and padding >= 0, got in={in_channels}, "
                f"out={out_channels}, kernel={kernel_size}, stride={stride}, padding={padding}"
            )
        kernel = set_neuron_constants(self, threshold, tau_m, tau_s, refractory, threshold_eps, spsp)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.padding = int(padding)
        self.init_range = init_range
        self.rule = HM2BPRule(
            threshold=self.threshold,
            kernel=kernel,
            effect_ratio=effect_ratio,
            side_effect=side_effect,
            silent_spsp=silent_spsp,
            silent_side_ratio=silent_side_ratio,
            reg_lambda=reg_lambda,
            reg_beta=reg_beta,
            reg_limit=reg_limit,
        )
        k = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, k, k).uniform_(-init_range, init_range))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def output_shape(self, in_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """``(C_out, H', W')`` for inputs ``(C_in, H, W)``."""
        return conv_output_shape(in_shape, self.out_channels, self.kernel_size, self.stride, self.padding)

    def forward(self, x: Tensor, target: Tensor | None = None, *, check: bool | None = None) -> Tensor:
        """``x`` ``[T, B, C_in, H, W]`` spikes -> ``[T, B, C_out, H', W']`` spikes (``target`` unused).

        ``check`` overrides ``check_inputs`` for this call (a network checks its input once)."""
        _check_input(x, self.in_channels, "SpikingConv2d", self.check_inputs if check is None else check)
        if min(self.output_shape(tuple(x.shape[2:]))[1:]) <= 0:
            raise InputError(f"SpikingConv2d: input {tuple(x.shape[3:])} is smaller than the {self.kernel_size}x"
                             f"{self.kernel_size} kernel (padding {self.padding})")
        return _HM2BPConv2d.apply(x, self.weight, self.bias, self)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, threshold={self.threshold:g}, spsp={self.spsp!r}, bias={self.bias is not None}"
        )


class _HM2BPPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, layer):  # noqa: D401 - autograd signature
        spikes_in = x.detach()
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        T, B = spikes_in.shape[:2]
        p = layer.kernel_size
        current = torch.zeros(T, B, spikes_in.shape[2], spikes_in.shape[3] // p, spikes_in.shape[4] // p,
                              dtype=dtype, device=x.device)  # [T, B, C, H//p, W//p]
        if T > 1:
            current[1:] = pool_input_current(spikes_in[:-1], p, dtype)
        out = lif_simulate(current, layer.threshold, tau_m=layer.tau_m, tau_s=layer.tau_s,
                           refractory=layer.refractory, threshold_eps=layer.threshold_eps)
        del current
        ctx.layer = layer
        ctx.save_for_backward(spikes_in.to(torch.uint8), out)
        return out.to(dtype)

    @staticmethod
    def backward(ctx, grad_out):
        pre, post = ctx.saved_tensors
        layer = ctx.layer
        grad_in = pool_hm2bp_backward(
            pre, post, grad_out.mean(0), layer.kernel_size, layer.kernel,
            divisor=layer.backward_divisor, effect_ratio=layer.effect_ratio,
        )
        return grad_in.unsqueeze(0).expand(pre.shape[0], *grad_in.shape), None


class SpikingPool2d(nn.Module):
    """Spiking ``p x p`` pooling (stride ``p``): LIF neurons driven by the sum of their window.

    No parameters. Backward (spec §3.6): :math:`g_i = (g_{o(i)}/p^2)\\,\\rho_{o(i),i}` with
    ``pool_rule="official"``, or :math:`g_{o(i)}/\\nu_{pool}` in place of :math:`g/p^2` with
    ``pool_rule="threshold"`` (what H9/H10 would give). :math:`\\rho = e_{o|i}/o_i` when both fire,
    else 1; plain 1 with ``effect_ratio=False``.

    Args:
        kernel_size: ``p`` (official 2).
        threshold: firing threshold :math:`\\nu` (official CNN: pool1 2, pool2 4). Required.
        tau_m, tau_s, refractory, spsp: as for ``SpikingConv2d``.
        threshold_eps: spike when ``v > threshold - threshold_eps`` (official pooling: 1e-6).

    Shapes: ``[T, B, C, H, W]`` -> ``[T, B, C, H//p, W//p]`` in the input's (floating) dtype.
    """

    def __init__(
        self,
        kernel_size: int = 2,
        threshold: float | None = None,
        *,
        tau_m: float = 64.0,
        tau_s: float = 8.0,
        refractory: int = 2,
        spsp: str = "exact",
        effect_ratio: bool = True,
        pool_rule: str = "official",
        threshold_eps: float = 1e-6,
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        if threshold is None:
            raise ConfigError("SpikingPool2d needs a positive threshold (official pool1 2, pool2 4), got None")
        if isinstance(kernel_size, bool) or kernel_size <= 0:
            raise ConfigError(f"SpikingPool2d kernel_size must be a positive integer, got {kernel_size}")
        if pool_rule not in POOL_RULES:
            raise ConfigError(f"pool_rule must be one of {POOL_RULES}, got {pool_rule!r}")
        self.check_inputs = bool(check_inputs)
        self.kernel_size = int(kernel_size)
        self.kernel = set_neuron_constants(self, threshold, tau_m, tau_s, refractory, threshold_eps, spsp)
        self.effect_ratio = effect_ratio
        self.pool_rule = pool_rule

    @property
    def backward_divisor(self) -> float:
        """``p**2`` (official) or ``nu_pool`` (``pool_rule="threshold"``)."""
        return float(self.kernel_size**2) if self.pool_rule == "official" else self.threshold

    def output_shape(self, in_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = in_shape
        return (c, h // self.kernel_size, w // self.kernel_size)

    def forward(self, x: Tensor, target: Tensor | None = None, *, check: bool | None = None) -> Tensor:
        """``x`` ``[T, B, C, H, W]`` spikes -> ``[T, B, C, H//p, W//p]`` spikes (``target`` unused).

        ``check`` overrides ``check_inputs`` for this call (a network checks its input once)."""
        _check_input(x, None, "SpikingPool2d", self.check_inputs if check is None else check)
        if min(x.shape[3:]) < self.kernel_size:
            raise InputError(f"SpikingPool2d: input {tuple(x.shape[3:])} is smaller than the pool size {self.kernel_size}")
        return _HM2BPPool2d.apply(x, self)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, threshold={self.threshold:g}, spsp={self.spsp!r}, pool_rule={self.pool_rule!r}"


_CONV_KEYS = ("effect_ratio", "side_effect", "silent_spsp", "silent_side_ratio", "reg_lambda", "reg_beta", "reg_limit")


def build_from_spec(ls, shape, thr, common: dict, rule: dict, conv_init: float, pool_rule: str):
    """Build the conv (``15C5``) or pool (``P2``) layer of a ``SpikingNetwork`` spec token.

    ``shape`` is the input ``(C, H, W)`` (a 2-D ``(H, W)`` input is one channel). Returns
    ``(layer, output shape (C, H, W))``. ``common`` holds the neuron constants and ``spsp``;
    ``rule`` the HM2-BP switches (and the regulariser, applied to conv kernels only).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise ConfigError(
            f"a {ls.kind} layer needs an image input such as '28x28' or '2x34x34' (channels first), "
            f"but its input has shape {shape}; conv/pool layers cannot follow a fully connected layer"
        )
    if ls.kind == "conv":
        layer = SpikingConv2d(shape[0], ls.size, ls.kernel, thr, init_range=conv_init, **common,
                              **{k: v for k, v in rule.items() if k in _CONV_KEYS})
    elif ls.kind == "pool":
        layer = SpikingPool2d(ls.size, thr, pool_rule=pool_rule, effect_ratio=rule.get("effect_ratio", True), **common)
    else:
        raise ValueError(f"build_from_spec builds conv or pool layers, got {ls.kind!r}")
    new_shape = layer.output_shape(shape)
    if min(new_shape[1:]) <= 0:
        raise ConfigError(f"layer {ls} does not fit its input of shape {shape} (output would be {new_shape})")
    return layer, new_shape
