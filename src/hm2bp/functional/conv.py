r"""HM2-BP for spiking convolution and pooling (``docs/algorithm.md``, "Convolution and pooling"), as conv/unfold
operations.

Time-first layout: spikes and traces are ``[T, B, C, H, W]``; per-neuron quantities
``[B, C, H, W]``. A conv layer's output neuron is :math:`o = (c_o, y, x)`; the input pixel under
kernel tap :math:`(c_i, k_y, k_x)` is :math:`i(o) = (c_i,\ y s + k_y - p,\ x s + k_x - p)`
(cross-correlation, no flip; stride :math:`s`, zero padding :math:`p`).

With the post-side adjoint trace of ``spsp.py`` (:math:`X = Q`, :math:`A = S_{in}`), :math:`e_{o|i} = \sum_t X[t,o]\,A[t,i]`,
every pairwise sum of the rule is one convolution-type operation over ``T*B`` frames:

.. math::

    \frac{\partial E}{\partial w_{c_o c_i k_y k_x}} &= \sum_{b,o\in c_o} \delta_o (1+\sigma_o)\,
        e_{o|i(o)} = \textstyle\sum_{\text{pairs}} \mathrm{conv2d\_weight}\big(A,\ \delta(1+\sigma)\odot X\big)\\
    \sigma_o &= \frac{1}{\nu}\sum_{\text{taps}} w\, e_{o|i(o)}/o_o
        = \frac{1}{\nu\, o_o}\sum_t X[t,o]\,\big(\mathrm{conv2d}(A, W)\big)[t,o]\\
    g^{prev}_i &= \sum_{o \ni i} \delta_o\, w_{o,i}\, \rho_{o,i}
        = \frac{1}{o_i}\sum_t A[t,i]\,\mathrm{conv\_transpose}(\delta\odot X, W)[t,i]
        \ (+\ \text{the } \rho = 1 \text{ terms})

with :math:`\delta = g/\nu` and the official silent-post constants (:math:`e = 0.1` for an active
pre, :math:`r = 0.5`) and :math:`\rho = 1` fallback of ``grad.py``. Pooling neurons have fixed unit
weights over non-overlapping :math:`p \times p` windows: :math:`g^{prev}_i = (g_{o(i)}/p^2)\,\rho_{o(i),i}`
(official; ``1/\nu_{pool}`` under the ``"threshold"`` rule). Nothing of size
``[B, N_out, N_in]`` is formed; time is processed in chunks to bound the intermediates.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.grad import conv2d_input, conv2d_weight

from hm2bp.functional.params import HM2BPRule, LIFParams, PSPKernel
from hm2bp.functional.rule import regulariser_grad
from hm2bp.functional.spsp import adjoint_trace

POOL_RULES = ("official", "threshold")
_CHUNK_ELEMS = 1 << 24  # elements per [t, B, C, H, W] chunk of the conv intermediates


def _time_chunks(T: int, frame_elems: int, time_chunk: int | None):
    step = time_chunk or max(1, _CHUNK_ELEMS // max(1, frame_elems))
    for start in range(0, T, step):
        yield slice(start, min(T, start + step))


def _frames(x: Tensor) -> Tensor:
    """``[t, B, C, H, W]`` -> ``[t*B, C, H, W]``."""
    return x.reshape(-1, *x.shape[2:])


def conv_output_shape(in_shape: tuple[int, int, int], out_channels: int, kernel_size: int, stride: int = 1,
                      padding: int = 0) -> tuple[int, int, int]:
    """``(C_out, H_out, W_out)`` of a conv layer on ``(C_in, H, W)`` inputs (floor division)."""
    _, h, w = in_shape
    return (out_channels, (h + 2 * padding - kernel_size) // stride + 1, (w + 2 * padding - kernel_size) // stride + 1)


def conv_input_current(spikes: Tensor, weight: Tensor, bias: Tensor | None = None, *, stride: int = 1,
                       padding: int = 0, out: Tensor | None = None, time_chunk: int | None = None) -> Tensor:
    """Synaptic input ``conv2d(s[t], W) (+ b)`` for spikes ``[T, B, C_in, H, W]`` -> ``[T, B, C_out, H', W']``.

    Cross-correlation (``torch`` conv2d, no kernel flip), in the weight's dtype. The caller
    applies the 1-step delay ("Neuron model"): ``current[t] = conv2d(s[t-1], W)``.
    """
    T, B = spikes.shape[:2]
    c_out, ho, wo = conv_output_shape(tuple(spikes.shape[2:]), weight.shape[0], weight.shape[-1], stride, padding)
    if out is None:
        out = weight.new_empty(T, B, c_out, ho, wo)
    for sl in _time_chunks(T, B * c_out * ho * wo, time_chunk):
        frames = _frames(spikes[sl]).to(weight.dtype)  # [t*B, C_in, H, W]
        y = F.conv2d(frames, weight, bias, stride=stride, padding=padding)  # [t*B, C_out, H', W']
        out[sl] = y.view(sl.stop - sl.start, B, c_out, ho, wo)
    return out


def pool_input_current(spikes: Tensor, kernel_size: int, dtype: torch.dtype) -> Tensor:
    """Sum of each non-overlapping ``p x p`` window: ``[T, B, C, H, W]`` -> ``[T, B, C, H//p, W//p]``."""
    T, B = spikes.shape[:2]
    y = F.avg_pool2d(_frames(spikes).to(dtype), kernel_size, stride=kernel_size, divisor_override=1)
    return y.view(T, B, *y.shape[1:])


def _factor_pairs(pre: Tensor, post: Tensor, kernel: PSPKernel, dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]:
    """``[(X, A)]`` with ``e_{o|i} = sum_t X[t, o] A[t, i]``: the post-side adjoint trace ``Q`` and the
    0/1 input spikes (``spsp.adjoint_trace``; one pair for every convention)."""
    return [(adjoint_trace(post, kernel, dtype), pre.to(dtype))]


def _bias_traces(T: int, dtype: torch.dtype, device) -> list[Tensor]:
    """Pre-side factor ``[T]`` of a bias input that fires at every step, paired like ``_factor_pairs``."""
    return [torch.ones(T, dtype=dtype, device=device)]


def conv_hm2bp_backward(
    pre: Tensor,
    post: Tensor,
    weight: Tensor,
    grad_counts: Tensor,
    neuron: LIFParams,
    rule: HM2BPRule,
    *,
    stride: int = 1,
    padding: int = 0,
    bias: Tensor | None = None,
    need_input_grad: bool = True,
    time_chunk: int | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """HM2-BP gradients of one spiking conv layer ("Weight update" applied per "Convolution and pooling").

    Args:
        pre: ``[T, B, C_in, H, W]`` input spikes (0/1, any dtype).
        post: ``[T, B, C_out, H', W']`` output spikes of the forward pass.
        weight: ``[C_out, C_in, k, k]`` kernels (pre-update).
        grad_counts: ``[B, C_out, H', W']`` ``dE/do`` of the output counts.
        neuron: the layer's neuron record (``threshold`` is ``nu_conv``; the S-PSP kernel).
        rule: learning-rule options (lateral/injection unused).
        bias: optional ``[C_out]`` bias, a synapse from an input firing at every step.
        need_input_grad: also return ``dE/do`` of the input counts.
        time_chunk: steps per chunk of the ``[t*B, ...]`` conv intermediates (default: automatic).

    Returns:
        ``(grad_weight [C_out, C_in, k, k], grad_input_counts [B, C_in, H, W] or None,
        grad_bias [C_out] or None)``; summed over the batch, the regulariser (per output
        kernel) added once per sample.
    """
    dtype = weight.dtype
    T, B = post.shape[:2]
    in_size = (B, *pre.shape[2:])
    frame_elems = B * max(int(pre[0, 0].numel()), int(post[0, 0].numel()) * 2)
    conv = dict(stride=stride, padding=padding)
    o_out = post.sum(0).to(dtype)  # [B, C_out, H', W']
    o_in = pre.sum(0).to(dtype)  # [B, C_in, H, W]
    active_out = o_out > 0
    silent_out = (~active_out).to(dtype)
    delta = grad_counts.to(dtype) / neuron.threshold  # [B, C_out, H', W']
    pairs = _factor_pairs(pre, post, neuron.psp_kernel, dtype)  # [(X [T,B,C_out,H',W'], A [T,B,C_in,H,W]), ...]
    bias_a = _bias_traces(T, dtype, weight.device) if bias is not None else None

    e_bias = None  # e_{o|bias} [B, C_out, H', W']
    if bias is not None:
        e_bias = sum((x * ab.view(T, 1, 1, 1, 1)).sum(0) for (x, _), ab in zip(pairs, bias_a))

    if rule.side_effect:
        a_ff = torch.zeros_like(delta)  # feed-forward T-PSP sum_taps w e_{o|i(o)}
        for x, a in pairs:
            for sl in _time_chunks(T, frame_elems, time_chunk):
                wa = F.conv2d(_frames(a[sl]), weight, **conv).view(x[sl].shape)  # [t, B, C_out, H', W']
                a_ff += (x[sl] * wa).sum(0)
        # silent post: r = 0.5 for every in-bounds tap, sigma = 0.5 sum_taps w / nu
        tap_sum = F.conv2d(weight.new_ones(1, *pre.shape[2:]), weight, **conv)  # [1, C_out, H', W']
        if bias is not None:
            a_ff = a_ff + bias.view(1, -1, 1, 1) * e_bias
            tap_sum = tap_sum + bias.view(1, -1, 1, 1)
        sigma = torch.where(
            active_out,
            a_ff / (neuron.threshold * o_out.clamp(min=1)),
            rule.silent_side_ratio * tap_sum / neuron.threshold,
        )
    else:
        sigma = torch.zeros_like(delta)
    coef = delta * (1.0 + sigma)  # [B, C_out, H', W']

    grad_w = torch.zeros_like(weight)
    for x, a in pairs:
        for sl in _time_chunks(T, frame_elems, time_chunk):
            gx = _frames(x[sl] * coef)  # [t*B, C_out, H', W']
            grad_w += conv2d_weight(_frames(a[sl]), weight.shape, gx, **conv)
    silent_coef = coef * silent_out  # silent post: e = 0.1 for every active pre under a tap
    active_in = (o_in > 0).to(dtype)
    grad_w += rule.silent_spsp * conv2d_weight(active_in, weight.shape, silent_coef, **conv)
    grad_w += B * regulariser_grad(weight, rule)

    grad_b = None
    if bias is not None:
        grad_b = (coef * e_bias).sum((0, 2, 3)) + rule.silent_spsp * silent_coef.sum((0, 2, 3))

    grad_in = None
    if need_input_grad:
        plain = conv2d_input(in_size, weight, delta, **conv)  # sum_o delta_o w_{o,i} (rho = 1)
        if rule.effect_ratio:
            h = torch.zeros(in_size, dtype=dtype, device=weight.device)  # sum_{o active} delta w e_{o|i}
            for x, a in pairs:
                for sl in _time_chunks(T, frame_elems, time_chunk):
                    t = sl.stop - sl.start
                    back = conv2d_input((t * B, *in_size[1:]), weight, _frames(x[sl] * delta), **conv)
                    h += (a[sl] * back.view(t, *in_size)).sum(0)
            from_silent = conv2d_input(in_size, weight, delta * silent_out, **conv)  # rho = 1 for o_o = 0
            grad_in = torch.where(o_in > 0, h / o_in.clamp(min=1) + from_silent, plain)
        else:
            grad_in = plain
    return grad_w, grad_in, grad_b


def _upsample(z: Tensor, p: int, size: tuple[int, int]) -> Tensor:
    """Copy each pooled value to its ``p x p`` window: ``[..., H', W']`` -> ``[..., H, W]`` (0 outside)."""
    up = z.repeat_interleave(p, dim=-2).repeat_interleave(p, dim=-1)
    return F.pad(up, (0, size[1] - up.shape[-1], 0, size[0] - up.shape[-2]))


def pool_hm2bp_backward(
    pre: Tensor,
    post: Tensor,
    grad_counts: Tensor,
    kernel_size: int,
    kernel: PSPKernel,
    *,
    divisor: float,
    effect_ratio: bool = True,
    time_chunk: int | None = None,
) -> Tensor:
    r"""Error through a spiking pooling layer ("Convolution and pooling"): :math:`g_i = (g_{o(i)}/d)\,\rho_{o(i),i}`.

    Args:
        pre: ``[T, B, C, H, W]`` input spikes; post: ``[T, B, C, H//p, W//p]`` output spikes.
        grad_counts: ``[B, C, H//p, W//p]`` ``dE/do`` of the pooled counts.
        kernel_size: ``p`` (window and stride).
        kernel: S-PSP convention of the ratio :math:`\rho = e_{o|i}/o_i` (both active, else 1).
        divisor: ``d``: ``p**2`` (official) or ``nu_pool``.
        effect_ratio: use :math:`\rho`; otherwise the plain unit weight.

    Returns:
        ``[B, C, H, W]`` ``dE/do`` of the input counts (0 for pixels outside every window).
    """
    dtype = grad_counts.dtype
    size = tuple(pre.shape[-2:])
    delta_up = _upsample(grad_counts / divisor, kernel_size, size)  # [B, C, H, W]
    if not effect_ratio:
        return delta_up
    T, B, C = pre.shape[:3]
    ho, wo = post.shape[-2:]
    p = kernel_size
    e = torch.zeros(B, C, ho, p, wo, p, dtype=dtype, device=pre.device)  # e_{o(i)|i} per window position
    for x, a in _factor_pairs(pre, post, kernel, dtype):
        for sl in _time_chunks(T, int(pre[0].numel()), time_chunk):
            win = a[sl, :, :, : ho * p, : wo * p].reshape(-1, B, C, ho, p, wo, p)  # [t, B, C, H', p, W', p]
            e += (win * x[sl].reshape(-1, B, C, ho, 1, wo, 1)).sum(0)
    e = F.pad(e.reshape(B, C, ho * p, wo * p), (0, size[1] - wo * p, 0, size[0] - ho * p))  # [B, C, H, W]
    o_in = pre.sum(0).to(dtype)
    o_out_up = _upsample(post.sum(0).to(dtype), kernel_size, size)
    rho = torch.where((o_in > 0) & (o_out_up > 0), e / o_in.clamp(min=1), torch.ones_like(e))
    return delta_up * rho
