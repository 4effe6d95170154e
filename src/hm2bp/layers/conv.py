r"""``SpikingConv2d`` and ``SpikingPool2d``: LIF feature maps trained with HM2-BP (spec §3.6).

Forward (spec §1.2): input current :math:`I[t] = \mathrm{conv2d}(s_{in}[t-1], W)` (cross-correlation,
valid padding by default), or the sum of each :math:`p \times p` window of :math:`s_{in}[t-1]` for
pooling neurons (fixed unit weights, stride :math:`p`), then the LIF scan of
:class:`hm2bp.functional.lif.LIFScan`, block by block. The current is gathered over the input
spike events (:mod:`hm2bp.functional.conv_events`), never a dense ``conv2d`` over every step
unless the input is denser than ``MAX_CONV_DENSITY``. Backward: the HM2-BP rule of
:mod:`hm2bp.functional.conv`, evaluated from the same events and the adjoint trace
(:mod:`hm2bp.functional.conv_grad`), under the count-level gradient semantics of the design: like
``SpikingLinear``, the layers hand each other 1-byte trains, ascending spike index lists and
differentiable ``[B, C, H, W]`` counts (``forward_counts``); ``forward`` wraps that for float
trains (``dE/do`` arrives broadcast over time; ``dE/do_in`` leaves broadcast over time). Only the
1-byte trains and int32 spike indices are kept for backward. Official thresholds compare against
exactly :math:`\nu` for conv layers and :math:`\nu - 10^{-6}` for pooling (spec §1.2 step 5).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hm2bp.checks import check_spikes
from hm2bp.errors import ConfigError, InputError
from hm2bp.functional import HM2BPRule
from hm2bp.functional.conv import POOL_RULES, conv_hm2bp_backward, conv_output_shape, pool_hm2bp_backward
from hm2bp.functional.conv_events import (
    MAX_CONV_DENSITY,
    ConvGeometry,
    gather_conv_current,
    line_entries,
    line_stamps,
    pool_current_events,
    split_events,
)
from hm2bp.functional.conv_grad import (
    CONV_MEMORY_BUDGET,
    conv_hm2bp_backward_events,
    counts_from_index,
    input_events,
    pool_hm2bp_backward_events,
)
from hm2bp.functional.current import as_uint8, index_dtype, spike_index
from hm2bp.functional.lif import LIFScan
from hm2bp.layers.linear import as_trains, spikes_with_counts
from hm2bp.layers.neurons import set_neuron_constants

BLOCK = 16  # time steps per block of the forward simulation


def _check_input(x: Tensor, channels: int | None, name: str, values: bool) -> None:
    """Shape ``[T, B, C, H, W]`` (always); 0/1 values, T >= 2, B >= 1 when ``values``."""
    if values:
        check_spikes(x, name, min_dim=5)
    if x.dim() != 5 or (channels is not None and x.shape[2] != channels):
        raise InputError(f"{name} expects spikes [T, B, {channels or 'C'}, H, W], got {tuple(x.shape)}")


def _input_index(spikes: Tensor, index: Tensor | None) -> Tensor:
    """Ascending flat indices of all input spikes (the previous layer's list when it has one)."""
    if index is None:
        index = spike_index(spikes)
    return index.to(index_dtype(spikes.numel()))


def _step_bounds(index: Tensor, step: int, starts: range) -> list[int]:
    """Positions in the ascending ``index`` where each step ``t in starts`` begins."""
    at = torch.tensor([t * step for t in starts], dtype=index.dtype, device=index.device)
    return torch.searchsorted(index, at).tolist()


class _ConvCounts(torch.autograd.Function):
    """Counts in, ``(counts, bool spike trains, spike index)`` out (count-level, like ``SpikingLinear``)."""

    @staticmethod
    def forward(ctx, counts_in, weight, bias, spikes_in, layer, in_index):  # noqa: D401 - autograd signature
        out, counts, index, out_index, sparse = layer.simulate(spikes_in, weight, bias, input_index=in_index)
        ctx.layer = layer
        ctx.has_bias = bias is not None
        ctx.sparse = sparse
        ctx.save_for_backward(spikes_in, out, weight, bias, counts_in, counts, index, out_index)
        ctx.mark_non_differentiable(out, out_index)
        return counts, out, out_index

    @staticmethod
    def backward(ctx, grad_counts, _grad_spikes, _grad_index):
        pre, post, weight, bias, counts_in, counts, index, out_index = ctx.saved_tensors
        layer = ctx.layer
        bias = bias if ctx.has_bias else None
        need_in = ctx.needs_input_grad[0]
        if not ctx.sparse:  # dense input: the conv-form backward over time chunks
            gw, gin, gb = conv_hm2bp_backward(pre, post, weight, grad_counts, layer.rule, stride=layer.stride,
                                              padding=layer.padding, bias=bias, need_input_grad=need_in)
            return gin, gw, gb, None, None, None
        T, B = pre.shape[:2]
        per_sample = pre[0, 0].numel()
        o_in = counts_in if counts_in is not None else counts_from_index(index, B, per_sample, weight.dtype)
        gw, gin, gb = conv_hm2bp_backward_events(
            input_events(index, T, B, per_sample), out_index, layer.geometry(tuple(pre.shape[2:])), weight,
            grad_counts, layer.rule, o_in=o_in.reshape(pre.shape[1:]), o_out=counts, pre=pre, bias=bias,
            need_input_grad=need_in, path=layer.backward_path, memory_budget=layer.memory_budget,
        )
        return gin, gw, gb, None, None, None


def _forward(layer, x: Tensor, counts, index, count_level: bool, check: bool | None):
    """The ``forward`` of conv and pool layers: :meth:`forward_counts` at count level, else float
    trains in, float trains out (input values checked once, before the float/bool split)."""
    if count_level:
        return layer.forward_counts(x, counts, index, check=check)
    if layer.check_inputs if check is None else check:
        check_spikes(x, type(layer).__name__, min_dim=5)
    spikes, in_counts = spikes_with_counts(x)
    out, out_counts, _ = layer.forward_counts(spikes, in_counts, check=False)
    return as_trains(out, out_counts)


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
        self.block = BLOCK  # time steps per block of the forward simulation
        self.memory_budget = CONV_MEMORY_BUDGET  # bytes per block of samples in the backward
        self.backward_path = "auto"  # "output" (adjoint trace) or "input" (input traces); same gradients

    def output_shape(self, in_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """``(C_out, H', W')`` for inputs ``(C_in, H, W)``."""
        return conv_output_shape(in_shape, self.out_channels, self.kernel_size, self.stride, self.padding)

    def geometry(self, in_shape: tuple[int, int, int]) -> ConvGeometry:
        """Shapes, stride and padding of the layer on inputs ``(C_in, H, W)``."""
        c, h, w = in_shape
        return ConvGeometry(c, h, w, self.out_channels, self.kernel_size, self.stride, self.padding)

    def simulate(
        self, spikes: Tensor, weight: Tensor, bias: Tensor | None, *, input_index: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor, bool]:
        """The forward simulation: ``[T, B, C_in, H, W]`` 0/1 spikes -> ``(spikes [T, B, C_out, H', W']
        bool, counts [B, C_out, H', W'], input index, output index, sparse)``.

        Blocks of ``BLOCK`` steps: the block's current ``I[t] = W ⋆ s[t-1] (+ b)`` is gathered from
        the input spikes (``functional.conv_events``: line stamps, channels-last) and feeds the LIF
        scan, which runs channels-last too (its state is ``[B, H', W', C_out]``; the bool train is
        written through a permuted view). No ``[T, B, C_out, H', W']`` float tensor is formed.
        Above ``MAX_CONV_DENSITY`` the dense ``conv2d`` is used per block (``sparse`` False).
        ``input_index`` / the returned input index: ascending flat indices of every input spike.
        """
        T, B = spikes.shape[:2]
        geom = self.geometry(tuple(spikes.shape[2:]))
        out = torch.empty(T, B, geom.c_out, geom.h_out, geom.w_out, dtype=torch.bool, device=weight.device)
        out[:1] = False  # no spike at t = 0; the scan writes every later step
        scan = LIFScan(out.permute(0, 1, 3, 4, 2), self.threshold, tau_m=self.tau_m, tau_s=self.tau_s,
                       refractory=self.refractory, threshold_eps=self.threshold_eps, dtype=weight.dtype)
        weight = weight.detach()
        bias = bias.detach() if bias is not None else None
        index = _input_index(spikes, input_index)
        step = B * geom.in_frame
        bounds = _step_bounds(index, step, range(0, T))
        reaching = bounds[-1] if T > 1 else 0  # spikes of steps 0 .. T-2 reach a current
        sparse = reaching <= MAX_CONV_DENSITY * max(1, (T - 1) * step)
        if sparse and T > 1:
            entries = line_entries(*split_events(index[:reaching], geom.in_frame, geom.h, geom.w), geom)
            stamps = line_stamps(weight, geom)
        for t0 in range(1, T, self.block):
            t1 = min(t0 + self.block, T)
            if sparse:  # frames (t - 1) B + b of the input feed the current at t
                current = gather_conv_current(entries, stamps, (t0 - 1) * B * geom.h_out, (t1 - t0) * B, geom)
            else:
                frames = as_uint8(spikes[t0 - 1 : t1 - 1]).reshape(-1, *spikes.shape[2:]).to(weight.dtype)
                current = F.conv2d(frames, weight, stride=self.stride, padding=self.padding).permute(0, 2, 3, 1)
            current = current.reshape(t1 - t0, B, geom.h_out, geom.w_out, geom.c_out)
            if bias is not None:
                current = current + bias
            scan.run(t0, current)
        counts = scan.counts.permute(0, 3, 1, 2).contiguous()
        out_index = spike_index(out).to(index_dtype(out.numel()))
        return out, counts, index, out_index, sparse

    def forward_counts(
        self, spikes: Tensor, counts: Tensor | None = None, index: Tensor | None = None, check: bool | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Count-level forward: ``spikes`` ``[T, B, C_in, H, W]`` (0/1, any dtype), their counts
        ``[B, C_in, H, W]`` (differentiable, or ``None`` for data) and optional ascending spike
        ``index`` -> ``(bool spikes [T, B, C_out, H', W'], counts, index)``. The gradient flows
        through the counts only (HM2-BP's count-level semantics)."""
        _check_input(spikes, self.in_channels, "SpikingConv2d", self.check_inputs if check is None else check)
        if min(self.output_shape(tuple(spikes.shape[2:]))[1:]) <= 0:
            raise InputError(f"SpikingConv2d: input {tuple(spikes.shape[3:])} is smaller than the {self.kernel_size}x"
                             f"{self.kernel_size} kernel (padding {self.padding})")
        out_counts, out, out_index = _ConvCounts.apply(counts, self.weight, self.bias, spikes.detach(), self, index)
        return out, out_counts, out_index

    def forward(
        self,
        x: Tensor,
        target: Tensor | None = None,
        *,
        counts: Tensor | None = None,
        index: Tensor | None = None,
        count_level: bool = False,
        check: bool | None = None,
    ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """``x`` ``[T, B, C_in, H, W]`` spikes -> ``[T, B, C_out, H', W']`` spikes in the weight's
        dtype (``target`` unused); ``dE/do`` of the output arrives broadcast over time and ``dE/do``
        of the input leaves broadcast over time. With ``count_level=True`` this is
        :meth:`forward_counts` (networks chain layers that way)."""
        return _forward(self, x, counts, index, count_level, check)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, threshold={self.threshold:g}, spsp={self.spsp!r}, bias={self.bias is not None}"
        )


class _PoolCounts(torch.autograd.Function):
    """Counts in, ``(counts, bool spike trains, spike index)`` out (count-level)."""

    @staticmethod
    def forward(ctx, counts_in, spikes_in, layer, in_index, dtype):  # noqa: D401 - autograd signature
        out, counts, index, out_index, sparse = layer.simulate(spikes_in, dtype, input_index=in_index)
        ctx.layer = layer
        ctx.sparse = sparse
        ctx.save_for_backward(spikes_in, out, counts_in, counts, index, out_index)
        ctx.mark_non_differentiable(out, out_index)
        return counts, out, out_index

    @staticmethod
    def backward(ctx, grad_counts, _grad_spikes, _grad_index):
        pre, post, counts_in, counts, index, out_index = ctx.saved_tensors
        layer = ctx.layer
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        if not ctx.sparse:
            grad_in = pool_hm2bp_backward(pre, post, grad_counts, layer.kernel_size, layer.kernel,
                                          divisor=layer.backward_divisor, effect_ratio=layer.effect_ratio)
            return grad_in, None, None, None, None
        T, B, C, H, W = pre.shape
        grad_in = pool_hm2bp_backward_events(
            input_events(index, T, B, C * H * W), out_index, C, (H, W), grad_counts, layer.kernel_size,
            layer.kernel, divisor=layer.backward_divisor, o_in=counts_in.reshape(B, C, H, W), o_out=counts,
            effect_ratio=layer.effect_ratio, memory_budget=layer.memory_budget,
        )
        return grad_in, None, None, None, None


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
        self.block = BLOCK  # time steps per block of the forward simulation
        self.memory_budget = CONV_MEMORY_BUDGET  # bytes per block of samples in the backward

    @property
    def backward_divisor(self) -> float:
        """``p**2`` (official) or ``nu_pool`` (``pool_rule="threshold"``)."""
        return float(self.kernel_size**2) if self.pool_rule == "official" else self.threshold

    def output_shape(self, in_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = in_shape
        return (c, h // self.kernel_size, w // self.kernel_size)

    def simulate(
        self, spikes: Tensor, dtype: torch.dtype, *, input_index: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
        """The forward simulation: ``[T, B, C, H, W]`` 0/1 spikes -> ``(spikes [T, B, C, H//p, W//p]
        bool, counts, input index, output index, sparse)``; the LIF state is in ``dtype``.

        The current of a pooling neuron is the number of its window's input spikes at ``t - 1``:
        one scatter of ones per input spike (``functional.conv_events.pool_current_events``), per
        block of ``BLOCK`` steps; above ``MAX_CONV_DENSITY`` the dense window sum is used.
        """
        T, B, C, H, W = spikes.shape
        p = self.kernel_size
        out = torch.empty(T, B, C, H // p, W // p, dtype=torch.bool, device=spikes.device)
        out[:1] = False  # no spike at t = 0; the scan writes every later step
        scan = LIFScan(out, self.threshold, tau_m=self.tau_m, tau_s=self.tau_s, refractory=self.refractory,
                       threshold_eps=self.threshold_eps, dtype=dtype)
        index = _input_index(spikes, input_index)
        step = B * C * H * W
        bounds = _step_bounds(index, step, range(0, T))
        sparse = (bounds[-1] if T > 1 else 0) <= MAX_CONV_DENSITY * max(1, (T - 1) * step)
        for t0 in range(1, T, self.block):
            t1 = min(t0 + self.block, T)
            if sparse:
                part = index[bounds[t0 - 1] : bounds[t1 - 1]] - (t0 - 1) * step
                current = pool_current_events(part, (t1 - t0) * B, C, H, W, p, dtype)
            else:
                frames = as_uint8(spikes[t0 - 1 : t1 - 1]).reshape(-1, C, H, W).to(dtype)
                current = F.avg_pool2d(frames, p, stride=p, divisor_override=1)
            scan.run(t0, current.view(t1 - t0, B, C, H // p, W // p))
        out_index = spike_index(out).to(index_dtype(out.numel()))
        return out, scan.counts, index, out_index, sparse

    def forward_counts(
        self, spikes: Tensor, counts: Tensor | None = None, index: Tensor | None = None, check: bool | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Count-level forward (see ``SpikingConv2d.forward_counts``): ``[T, B, C, H, W]`` spikes,
        their counts and index -> ``(bool spikes [T, B, C, H//p, W//p], counts, index)``. The
        LIF state is in the dtype of ``counts`` (else of floating ``spikes``, else the default)."""
        _check_input(spikes, None, "SpikingPool2d", self.check_inputs if check is None else check)
        if min(spikes.shape[3:]) < self.kernel_size:
            raise InputError(
                f"SpikingPool2d: input {tuple(spikes.shape[3:])} is smaller than the pool size {self.kernel_size}")
        if counts is not None:
            dtype = counts.dtype
        else:
            dtype = spikes.dtype if spikes.is_floating_point() else torch.get_default_dtype()
        out_counts, out, out_index = _PoolCounts.apply(counts, spikes.detach(), self, index, dtype)
        return out, out_counts, out_index

    def forward(
        self,
        x: Tensor,
        target: Tensor | None = None,
        *,
        counts: Tensor | None = None,
        index: Tensor | None = None,
        count_level: bool = False,
        check: bool | None = None,
    ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """``x`` ``[T, B, C, H, W]`` spikes -> ``[T, B, C, H//p, W//p]`` spikes in the input's
        (floating) dtype (``target`` unused). With ``count_level=True`` this is
        :meth:`forward_counts`."""
        return _forward(self, x, counts, index, count_level, check)

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
