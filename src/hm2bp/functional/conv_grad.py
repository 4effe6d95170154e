r"""Event-driven HM2-BP backward of spiking conv and pooling layers
(``docs/algorithm.md``, "Weight update" per "Convolution and pooling").

The rule is the one of :mod:`hm2bp.functional.conv` (same equations, same silent-neuron
constants); only the evaluation differs. With the post-side adjoint trace :math:`Q` of
``spsp.adjoint_trace`` (:math:`e_{o|i} = \sum_s Q[s, o]\, S[s, i]`), every term of the rule is a
sum over the **input spike events** :math:`(s, b, c_i, i_y, i_x)` of rows of :math:`Q`:

.. math::

    a_{ff}[b, o] &= \sum_s Q[s, b, o]\ \big(W \star S_b[s]\big)_o
        &&\text{(the current, re-gathered as in the forward)}\\
    \frac{\partial E}{\partial w_{c_o c_i k_y k_x}} &\mathrel{+}= \sum_{\text{events}}
        P[s, b, c_o, y, x],\quad P = \delta (1 + \sigma) \odot Q
        &&\text{(one } \texttt{embedding\_bag} \text{ per tap, bags } (b, c_i))\\
    h[b, i] &= \sum_{s:\ S[s,b,i]=1}\ \sum_{\text{taps}, c_o} w_{c_o c_i k_y k_x}\, (\delta \odot Q)[s, b, c_o, y, x]
        &&\text{(effect-ratio error to the inputs)}

where :math:`(y, x) = ((i_y + p - k_y)/s, (i_x + p - k_x)/s)` must be an integer output position.
:math:`Q` is kept **channels-last** ``[T, g, H', W', C_out]`` so that each gathered row holds the
``C_out`` values of one output position. Pooling neurons need only
:math:`e_{o(i)|i} = \sum_s Q[s, o(i)] S[s, i]`: one gathered value per input event.

This is the ``"output"`` path of :func:`conv_hm2bp_backward_events`; the ``"input"`` path
(:mod:`hm2bp.functional.conv_input_trace`) scans the input PSP traces instead and gathers them at
the output coefficient events, cheaper when the layer has fewer input pixels than output
neurons or sparse output spikes; the ``"gemm"`` path (:mod:`hm2bp.functional.conv_time_gemm`)
contracts :math:`Q` with the unfolded input frames over time, cheaper once a wide layer's
spikes are dense (``choose_path``).

Memory: :math:`Q` is formed for a block of ``g`` samples sized by ``memory_budget`` (its two
scan halves plus one chunk of the re-gathered current), so the working memory does not grow with
``T`` or ``B``; nothing of size ``[T, B, C, H, W]`` in floats is formed. The per-sample terms that
need no :math:`Q` (silent posts, the plain error) are one ``conv2d`` of one frame per sample.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.grad import conv2d_input, conv2d_weight

from hm2bp.functional.blocks import sample_group
from hm2bp.functional.conv import _upsample
from hm2bp.functional.conv_events import ConvGeometry, gather_conv_current, line_entries, line_stamps, split_events
from hm2bp.functional.conv_input_trace import input_trace_terms
from hm2bp.functional.conv_time_gemm import time_gemm_terms
from hm2bp.functional.params import HM2BPRule, LIFParams, PSPKernel
from hm2bp.functional.rule import regulariser_grad
from hm2bp.functional.spsp import InputEvents, adjoint_trace, reset_events_from_index

CONV_MEMORY_BUDGET = 128 * 2**20  # bytes per block of samples (Q's scans + one current chunk)
CURRENT_CHUNK = 32  # steps per chunk of the re-gathered current (side effect)
# multiply-adds of the GEMM path that cost about as much as one gathered float of the event paths
# (1 thread; docs/benchmarks.md, "Choosing the conv backward path")
GEMM_MACS_PER_GATHER = 12
PATHS = ("auto", "output", "input", "gemm")


def channels_last_index(index: Tensor, T: int, B: int, c: int, h: int, w: int) -> Tensor:
    """Flat indices into ``[T, B, C, H, W]`` -> the same spikes numbered in ``[T, B, H, W, C]``
    (still time-major)."""
    frame, ch, y, x = split_events(index, c * h * w, h, w)
    return ((frame * h + y) * w + x) * c + ch


def _tap_rows(ev_s: Tensor, ev_b: Tensor, iy: Tensor, ix: Tensor, g: int, geom: ConvGeometry, ky: int, kx: int):
    """Row of ``Q`` viewed as ``[T g H' W', C_out]`` that input events reach through tap
    ``(ky, kx)``, and whether the tap lands on an output position (invalid rows are clamped to 0)."""
    s, p = geom.stride, geom.padding
    ny, nx = iy + (p - ky), ix + (p - kx)
    y, x = torch.div(ny, s, rounding_mode="floor"), torch.div(nx, s, rounding_mode="floor")
    ok = (ny >= 0) & (nx >= 0) & (y < geom.h_out) & (x < geom.w_out)
    if s > 1:
        ok &= (ny == y * s) & (nx == x * s)
    row = ((ev_s * g + ev_b) * geom.h_out + y) * geom.w_out + x
    return torch.where(ok, row, torch.zeros_like(row)), ok


def conv_hm2bp_backward_events(
    pre_events: InputEvents,
    post_index: Tensor,
    geom: ConvGeometry,
    weight: Tensor,
    grad_counts: Tensor,
    neuron: LIFParams,
    rule: HM2BPRule,
    *,
    o_in: Tensor,
    o_out: Tensor,
    pre: Tensor | None = None,
    bias: Tensor | None = None,
    need_input_grad: bool = True,
    path: str = "auto",
    group: int | None = None,
    memory_budget: int = CONV_MEMORY_BUDGET,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """HM2-BP gradients of one spiking conv layer from spike events (same results as
    :func:`hm2bp.functional.conv.conv_hm2bp_backward`).

    Args:
        pre_events: the input spikes ``[T, B, C_in H W]`` as :class:`InputEvents` (every step).
        post_index: ascending flat indices of the output spikes in ``[T, B, C_out, H', W']``.
        geom: the layer's shapes, stride and padding.
        weight: ``[C_out, C_in, k, k]``; grad_counts: ``[B, C_out, H', W']`` ``dE/do``.
        neuron: the layer's neuron record (``threshold`` is ``nu_conv``; the S-PSP kernel).
        rule: learning-rule options.
        o_in, o_out: spike counts ``[B, C_in, H, W]`` and ``[B, C_out, H', W']``.
        pre: the input spike trains ``[T, B, C_in, H, W]`` (0/1, any dtype); needed by the
            ``"input"`` path.
        bias: optional ``[C_out]`` bias (a synapse from an input firing at every step).
        need_input_grad: also return ``dE/do`` of the input counts.
        path: ``"output"`` scans the post-side adjoint trace ``Q`` (``C_out H' W'`` neurons) and
            gathers it at the input events; ``"input"`` scans the input PSP traces (``C_in H W``
            neurons, :mod:`hm2bp.functional.conv_input_trace`) and gathers them at the output
            coefficient events; ``"gemm"`` contracts ``Q`` with the unfolded input trains over
            time (:mod:`hm2bp.functional.conv_time_gemm`); ``"auto"`` picks the cheapest by a
            count of the work of each (``choose_path``). Same gradients every way.
        group: samples per block (default: as many as ``memory_budget`` bytes allow).

    Returns:
        ``(grad_weight, grad_input_counts [B, C_in, H, W] or None, grad_bias or None)``, summed
        over the batch, the regulariser added once per sample.
    """
    dtype = weight.dtype
    T, B = pre_events.shape[:2]
    conv = dict(stride=geom.stride, padding=geom.padding)
    o_out = o_out.to(dtype)
    o_in = o_in.to(dtype)
    active_out = o_out > 0
    silent_out = (~active_out).to(dtype)
    delta = grad_counts.to(dtype) / neuron.threshold  # [B, C_out, H', W']

    silent_sigma = None
    if rule.side_effect:  # silent post: r = 0.5 for every in-bounds tap
        tap_sum = F.conv2d(weight.new_ones(1, geom.c_in, geom.h, geom.w), weight, **conv)  # [1, C_out, H', W']
        if bias is not None:
            tap_sum = tap_sum + bias.view(1, -1, 1, 1)
        silent_sigma = rule.silent_side_ratio * tap_sum / neuron.threshold
    # silent posts need no S-PSP: coef = delta (1 + sigma_silent), e = silent_spsp for every active pre
    silent_coef = delta * silent_out * (1.0 + silent_sigma if silent_sigma is not None else 1.0)
    grad_w = rule.silent_spsp * conv2d_weight((o_in > 0).to(dtype), weight.shape, silent_coef, **conv)
    grad_b = rule.silent_spsp * silent_coef.sum((0, 2, 3)) if bias is not None else None
    want_h = need_input_grad and rule.effect_ratio

    if path not in PATHS:
        raise ValueError(f"path must be one of {', '.join(map(repr, PATHS))}, got {path!r}")
    if path in ("input", "gemm") and pre is None:
        raise ValueError(f"path={path!r} needs the input trains (pre)")
    if path == "auto":
        path = "output" if pre is None else choose_path(pre_events.s.numel(), post_index.numel(), T, B, geom,
                                                        neuron.psp_kernel.window is not None, want_h)
    terms = {"input": input_trace_terms, "gemm": time_gemm_terms, "output": _output_trace_terms}[path]
    acc, h, gb = terms(pre_events, pre, post_index, geom, weight, neuron, rule, delta=delta, active_out=active_out,
                       o_out=o_out, bias=bias, want_h=want_h, group=group, memory_budget=memory_budget)
    grad_w = grad_w + acc + B * regulariser_grad(weight, rule)
    if gb is not None:
        grad_b = grad_b + gb
    grad_in = None
    if need_input_grad:
        in_size = (B, geom.c_in, geom.h, geom.w)
        plain = conv2d_input(in_size, weight, delta, **conv)  # sum_o delta_o w_{o,i} (rho = 1)
        if rule.effect_ratio:
            from_silent = conv2d_input(in_size, weight, delta * silent_out, **conv)  # rho = 1 for o_o = 0
            grad_in = torch.where(o_in > 0, h.view(in_size) / o_in.clamp(min=1) + from_silent, plain)
        else:
            grad_in = plain
    return grad_w, grad_in, grad_b


def choose_path(n_pre: int, n_post: int, T: int, B: int, geom: ConvGeometry, windowed: bool, want_h: bool,
                *, gemm: bool = True) -> str:
    """``"output"``, ``"input"`` or ``"gemm"``: the path with the least work, counted in gathered
    floats. The event paths scan two traces of their side's neurons over ``T`` steps, then gather,
    per kernel tap, a row of the other side's channels for every event: input spikes on the output
    path, post coefficient events (2 per output spike, 3 with the official window) on the input
    path. The GEMM path (``conv_time_gemm``; only when ``gemm``, i.e. the dense input trains are
    at hand) scans the output side and does ``T H' W' C_out C_in k^2`` multiply-adds per sample,
    ``GEMM_MACS_PER_GATHER`` of which cost about one gathered float (measured in
    ``docs/benchmarks.md``, "Choosing the conv backward path")."""
    taps = geom.k * geom.k
    n_out = geom.c_out * geom.h_out * geom.w_out
    n_in = geom.c_in * geom.h * geom.w
    per_spike = 3 if windowed else 2
    costs = {
        "output": 2 * T * B * n_out + 2 * n_pre * taps * geom.c_out * (2 if want_h else 1),
        "input": 2 * T * B * n_in + 2 * per_spike * n_post * taps * geom.c_in * (3 if want_h else 2),
    }
    if gemm:
        macs = T * B * geom.h_out * geom.w_out * geom.c_out * geom.c_in * taps
        costs["gemm"] = 2 * T * B * n_out + macs / GEMM_MACS_PER_GATHER
    return min(costs, key=costs.get)


def _output_trace_terms(pre_events, pre, post_index, geom, weight, neuron, rule, *, delta, active_out, o_out, bias, want_h,
                        group, memory_budget):
    """The active posts' terms from the post-side adjoint trace ``Q`` (module docstring):
    ``(grad_w part [C_out, C_in, k, k], h [B, C_in H W] or None, grad_b part or None)``."""
    dtype, device = weight.dtype, weight.device
    T, B = pre_events.shape[:2]
    ho, wo, c_out, k = geom.h_out, geom.w_out, geom.c_out, geom.k
    n_out = c_out * ho * wo
    kernel = neuron.psp_kernel
    per_sample = 2 * (T + kernel.shift) * n_out + (CURRENT_CHUNK * n_out if rule.side_effect else 0)
    group = sample_group(B, per_sample, weight.element_size(), memory_budget, group)
    events = reset_events_from_index(channels_last_index(post_index, T, B, c_out, ho, wo), T, B * n_out,
                                     kernel, dtype)
    workspace = torch.empty(2 * (T + kernel.shift) * group * n_out, dtype=dtype, device=device)
    stamps = line_stamps(weight, geom) if rule.side_effect else None
    w_taps = weight.permute(2, 3, 1, 0).contiguous()  # [k, k, C_in, C_out]
    acc = torch.zeros(k, k, geom.c_in, c_out, dtype=dtype, device=device)  # grad_w per tap, [C_in, C_out]
    h_all = torch.zeros(B, geom.c_in * geom.h * geom.w, dtype=dtype, device=device) if want_h else None
    grad_b = torch.zeros(c_out, dtype=dtype, device=device) if bias is not None else None
    hw = geom.h * geom.w
    for b0 in range(0, B, group):
        b1 = min(b0 + group, B)
        g = b1 - b0
        q = adjoint_trace((T, g, ho, wo, c_out), kernel, dtype, events=events.neurons(b0 * n_out, b1 * n_out),
                          workspace=workspace)  # [T, g, H', W', C_out], channels-last
        ev = pre_events.samples(b0, b1)  # sorted by (b, c, iy, ix, s)
        ci = torch.div(ev.j, hw, rounding_mode="floor")
        rem = ev.j - ci * hw
        iy = torch.div(rem, geom.w, rounding_mode="floor")
        ix = rem - iy * geom.w
        d_cl = delta[b0:b1].permute(0, 2, 3, 1)  # [g, H', W', C_out]
        active_f = active_out[b0:b1].permute(0, 2, 3, 1).to(dtype)

        factor = None  # 1 + sigma of the active posts, channels-last
        e_bias = q.sum(0) if bias is not None else None
        if rule.side_effect:
            a_ff = _trace_dot_current(q, ev.s * g + ev.b, ci, iy, ix, stamps, geom)  # [g, H', W', C_out]
            if bias is not None:
                a_ff = a_ff + bias * e_bias
            factor = 1.0 + a_ff / (neuron.threshold * o_out[b0:b1].permute(0, 2, 3, 1).clamp(min=1))
        q.mul_(d_cl * active_f)  # delta Q of the active posts (silent ones are handled by the caller)
        table = q.view(-1, c_out)
        if want_h:
            h_ev = torch.zeros(ev.s.numel(), dtype=dtype, device=device)
            for ky in range(k):
                for kx in range(k):
                    row, ok = _tap_rows(ev.s, ev.b, iy, ix, g, geom, ky, kx)
                    part = table.index_select(0, row).mul_(w_taps[ky, kx].index_select(0, ci))
                    h_ev += part.sum(1) * ok.to(dtype)
            h_all[b0:b1].view(-1).index_add_(0, ev.b.long() * (geom.c_in * hw) + ev.j.long(), h_ev)
        if factor is not None:
            q.mul_(factor)  # P = delta (1 + sigma) Q
        if bias is not None:  # coef e_bias of the active posts (e_bias is 0 for silent ones)
            coef = d_cl if factor is None else d_cl * factor
            grad_b += (e_bias * coef).sum((0, 1, 2))
        bag = ev.b.long() * geom.c_in + ci.long()  # sorted: events are ordered by (b, c)
        offsets = torch.searchsorted(bag, torch.arange(g * geom.c_in, device=device))
        for ky in range(k):
            for kx in range(k):
                row, ok = _tap_rows(ev.s, ev.b, iy, ix, g, geom, ky, kx)
                part = F.embedding_bag(row.long(), table, offsets, mode="sum", per_sample_weights=ok.to(dtype))
                acc[ky, kx] += part.view(g, geom.c_in, c_out).sum(0)
        del q, table
    return acc.permute(3, 2, 0, 1), h_all, grad_b


def _trace_dot_current(q: Tensor, frame: Tensor, ci: Tensor, iy: Tensor, ix: Tensor, stamps: Tensor,
                       geom: ConvGeometry, chunk: int = CURRENT_CHUNK) -> Tensor:
    r"""``a[b, o] = sum_s Q[s, b, o] (W \star S_b[s])_o`` ``[g, H', W', C_out]``: the current of
    every step is gathered again from the input events (frames ``s g + b``), ``chunk`` steps at a
    time, and contracted with ``Q`` (never more than ``chunk`` steps of current)."""
    T, g = q.shape[:2]
    entries = line_entries(frame, ci, iy, ix, geom)
    out = torch.zeros(q.shape[1:], dtype=q.dtype, device=q.device)
    for t0 in range(0, T, chunk):
        t1 = min(t0 + chunk, T)
        cur = gather_conv_current(entries, stamps, t0 * g * geom.h_out, (t1 - t0) * g, geom)
        out += cur.view(t1 - t0, *q.shape[1:]).mul_(q[t0:t1]).sum(0)
    return out


def pool_hm2bp_backward_events(
    pre_events: InputEvents,
    post_index: Tensor,
    channels: int,
    size: tuple[int, int],
    grad_counts: Tensor,
    kernel_size: int,
    kernel: PSPKernel,
    *,
    divisor: float,
    o_in: Tensor,
    o_out: Tensor,
    effect_ratio: bool = True,
    group: int | None = None,
    memory_budget: int = CONV_MEMORY_BUDGET,
) -> Tensor:
    r"""Error through a spiking pooling layer from spike events (same results as
    :func:`hm2bp.functional.conv.pool_hm2bp_backward`): :math:`g_i = (g_{o(i)}/d)\,\rho_{o(i),i}`.

    Args:
        pre_events: input spikes ``[T, B, C H W]`` as :class:`InputEvents`; post_index: ascending
            flat indices of the output spikes ``[T, B, C, H//p, W//p]``.
        channels, size: ``C`` and ``(H, W)`` of the input.
        grad_counts: ``[B, C, H//p, W//p]`` ``dE/do``; kernel_size: ``p``; kernel: S-PSP convention.
        divisor: ``p**2`` (official) or ``nu_pool``.
        o_in, o_out: spike counts ``[B, C, H, W]`` and ``[B, C, H//p, W//p]``.

    Returns:
        ``[B, C, H, W]`` ``dE/do`` of the input counts.
    """

    dtype = grad_counts.dtype
    p = kernel_size
    h, w = size
    ho, wo = h // p, w // p
    delta_up = _upsample(grad_counts / divisor, p, size)  # [B, C, H, W]
    if not effect_ratio:
        return delta_up
    T, B = pre_events.shape[:2]
    n_out = channels * ho * wo
    group = sample_group(B, 2 * (T + kernel.shift) * n_out, grad_counts.element_size(), memory_budget, group)
    events = reset_events_from_index(post_index, T, B * n_out, kernel, dtype)
    workspace = torch.empty(2 * (T + kernel.shift) * group * n_out, dtype=dtype, device=grad_counts.device)
    e = torch.zeros(B, channels * h * w, dtype=dtype, device=grad_counts.device)  # e_{o(i)|i}
    for b0 in range(0, B, group):
        b1 = min(b0 + group, B)
        g = b1 - b0
        q = adjoint_trace((T, g, n_out), kernel, dtype, events=events.neurons(b0 * n_out, b1 * n_out),
                          workspace=workspace)
        ev = pre_events.samples(b0, b1)
        c = torch.div(ev.j, h * w, rounding_mode="floor")
        rem = ev.j - c * (h * w)
        iy = torch.div(rem, w, rounding_mode="floor")
        ix = rem - iy * w
        y, x = torch.div(iy, p, rounding_mode="floor"), torch.div(ix, p, rounding_mode="floor")
        keep = (y < ho) & (x < wo)
        row = (ev.s * g + ev.b) * n_out + (c * ho + y) * wo + x
        vals = q.reshape(-1).index_select(0, torch.where(keep, row, torch.zeros_like(row)).long())
        e[b0:b1].view(-1).index_add_(0, (ev.b.long() * (channels * h * w) + ev.j.long()), vals * keep.to(dtype))
        del q
    e = e.view(B, channels, h, w)
    o_out_up = _upsample(o_out.to(dtype), p, size)
    o_in = o_in.to(dtype)
    rho = torch.where((o_in > 0) & (o_out_up > 0), e / o_in.clamp(min=1), torch.ones_like(e))
    return delta_up * rho


def input_events(index: Tensor, T: int, B: int, per_sample: int) -> InputEvents:
    """:class:`InputEvents` (sorted by sample, input, step) of a layer's input given its flat spike
    indices over ``[T, B, per_sample]`` (any order)."""
    return InputEvents.from_flat(index, (T, B, per_sample))


def counts_from_index(index: Tensor, B: int, per_sample: int, dtype: torch.dtype) -> Tensor:
    """Spike counts ``[B, per_sample]`` from flat indices over ``[T, B, per_sample]`` (exact)."""
    n = B * per_sample
    return torch.bincount((index % n).long(), minlength=n).to(dtype).view(B, per_sample)


__all__ = [
    "CONV_MEMORY_BUDGET",
    "channels_last_index",
    "conv_hm2bp_backward_events",
    "counts_from_index",
    "input_events",
    "pool_hm2bp_backward_events",
]
