r"""Forward simulations of the three layer kinds: input current, then the LIF scan, block by block.

``docs/algorithm.md``, "Neuron model" and "Convolution and pooling". Each layer's input current
at step :math:`t` comes from the input spikes at :math:`t-1`:

.. math::

    I[t] = W s_{in}[t-1] (+ b)\ \text{(fully connected)},\qquad
    I[t] = \mathrm{conv2d}(s_{in}[t-1], W) (+ b)\ \text{(conv)},\qquad
    I[t] = \textstyle\sum_{p \times p\ \text{window}} s_{in}[t-1]\ \text{(pool)},

gathered over the input spike events (``current``, ``conv_events``) for blocks of ``block`` steps
and fed to :class:`~hm2bp.functional.lif.LIFScan`, so no ``[T, B, N_out]`` float tensor is ever
formed. Above a density limit the dense GEMM / ``conv2d`` / window sum is used per block instead.
When the scan is fused (Triton backend, ``LIFScan.fused``) the block is all ``T`` steps: one
gather and one scan kernel per layer.

Shapes are time-first. Each function returns the bool output trains, their counts (float, in the
compute dtype), the ascending flat index of the output spikes (int32 where it fits) and what the
backward reuses of the input spike list.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hm2bp.functional.conv_events import (
    MAX_CONV_DENSITY,
    ConvGeometry,
    gather_conv_current,
    line_entries,
    line_stamps,
    pool_current_events,
    split_events,
)
from hm2bp.functional.current import MAX_SPARSE_DENSITY, as_uint8, gather_current, index_dtype, spike_index
from hm2bp.functional.lif import LIFScan
from hm2bp.functional.params import LIFParams

BLOCK = 16  # time steps per block of the forward simulation


def linear_forward(
    spikes: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    neuron: LIFParams,
    *,
    lateral: Tensor | None = None,
    input_index: Tensor | None = None,
    return_events: bool = False,
    block: int = BLOCK,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Fully connected layer: ``[T, B, in]`` 0/1 spikes -> ``(spikes [T, B, out] bool, counts [B, out],
    events, out_index)``.

    ``weight`` ``[out, in]``, ``bias`` ``[out]`` or ``None``, ``lateral`` ``[out, out]`` (``W_lat[post,
    pre]``, on the layer's own spikes at ``t - 1``; "Lateral inhibition"). The input spikes are
    listed once (``nonzero``, or the prefix of ``input_index``, the previous layer's list) and each
    block's events are a slice of that list; above ``MAX_SPARSE_DENSITY`` the dense GEMM is used.
    With ``return_events``, ``events`` holds the flat indices of the input spikes that were
    gathered (every step but the last, whose spikes reach no current), or ``None`` on the dense
    path; the backward reuses them.
    """
    T, B = spikes.shape[:2]
    out = torch.zeros(T, B, weight.shape[0], dtype=torch.bool, device=weight.device)
    scan = LIFScan(out, neuron, lateral=lateral, dtype=weight.dtype)
    block = T if scan.fused else block  # the fused scan takes all steps in one launch
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
        starts = torch.arange(0, T, block, device=index.device) * step
        bounds = torch.searchsorted(index, starts).tolist() + [index.numel()]
    for k, t0 in enumerate(range(1, T, block)):
        t1 = min(t0 + block, T)
        frames = spikes[t0 - 1 : t1 - 1]
        if sparse:  # I[t] = W s[t-1], gathered
            current = gather_current(index[bounds[k] : bounds[k + 1]], frames, weight_t, offset=(t0 - 1) * step)
        else:
            current = as_uint8(frames).to(weight.dtype) @ weight_t
        if bias is not None:
            current += bias.detach()
        scan.run(t0, current)
    events = None
    if return_events and sparse:
        events = index.to(index_dtype(spikes.numel()))
    out_index = spike_index(out).to(index_dtype(out.numel()))
    return out, scan.counts, events, out_index


def _input_index(spikes: Tensor, index: Tensor | None) -> Tensor:
    """Ascending flat indices of all input spikes (the previous layer's list when it has one)."""
    if index is None:
        index = spike_index(spikes)
    return index.to(index_dtype(spikes.numel()))


def _step_bounds(index: Tensor, step: int, starts: range) -> list[int]:
    """Positions in the ascending ``index`` where each step ``t in starts`` begins."""
    at = torch.tensor([t * step for t in starts], dtype=index.dtype, device=index.device)
    return torch.searchsorted(index, at).tolist()


def conv_forward(
    spikes: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    neuron: LIFParams,
    geom: ConvGeometry,
    *,
    input_index: Tensor | None = None,
    block: int = BLOCK,
) -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
    """Conv layer: ``[T, B, C_in, H, W]`` 0/1 spikes -> ``(spikes [T, B, C_out, H', W'] bool, counts
    [B, C_out, H', W'], input index, output index, sparse)``.

    The block's current ``I[t] = W ⋆ s[t-1] (+ b)`` is gathered from the input spikes (line stamps,
    channels-last) and feeds the LIF scan, which runs channels-last too (its state is ``[B, H', W',
    C_out]``; the bool train is written through a permuted view). Above ``MAX_CONV_DENSITY`` the
    dense ``conv2d`` is used per block (``sparse`` False). ``input_index`` / the returned input
    index: ascending flat indices of every input spike.
    """
    T, B = spikes.shape[:2]
    out = torch.empty(T, B, geom.c_out, geom.h_out, geom.w_out, dtype=torch.bool, device=weight.device)
    out[:1] = False  # no spike at t = 0; the scan writes every later step
    scan = LIFScan(out.permute(0, 1, 3, 4, 2), neuron, dtype=weight.dtype)
    block = T if scan.fused else block  # the fused scan takes all steps in one launch
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
    for t0 in range(1, T, block):
        t1 = min(t0 + block, T)
        if sparse:  # frames (t - 1) B + b of the input feed the current at t
            current = gather_conv_current(entries, stamps, (t0 - 1) * B * geom.h_out, (t1 - t0) * B, geom)
        else:
            frames = as_uint8(spikes[t0 - 1 : t1 - 1]).reshape(-1, *spikes.shape[2:]).to(weight.dtype)
            current = F.conv2d(frames, weight, stride=geom.stride, padding=geom.padding).permute(0, 2, 3, 1)
        current = current.reshape(t1 - t0, B, geom.h_out, geom.w_out, geom.c_out)
        if bias is not None:
            current = current + bias
        scan.run(t0, current)
    counts = scan.counts.permute(0, 3, 1, 2).contiguous()
    out_index = spike_index(out).to(index_dtype(out.numel()))
    return out, counts, index, out_index, sparse


def pool_forward(
    spikes: Tensor,
    window: int,
    neuron: LIFParams,
    dtype: torch.dtype,
    *,
    input_index: Tensor | None = None,
    block: int = BLOCK,
) -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
    """Pool layer (``window`` ``p``, stride ``p``): ``[T, B, C, H, W]`` 0/1 spikes -> ``(spikes [T, B, C,
    H//p, W//p] bool, counts, input index, output index, sparse)``; the LIF state is in ``dtype``.

    The current of a pooling neuron is the number of its window's input spikes at ``t - 1``: one
    scatter of ones per input spike (``conv_events.pool_current_events``), per block; above
    ``MAX_CONV_DENSITY`` the dense window sum is used.
    """
    T, B, C, H, W = spikes.shape
    p = window
    out = torch.empty(T, B, C, H // p, W // p, dtype=torch.bool, device=spikes.device)
    out[:1] = False  # no spike at t = 0; the scan writes every later step
    scan = LIFScan(out, neuron, dtype=dtype)
    block = T if scan.fused else block  # the fused scan takes all steps in one launch
    index = _input_index(spikes, input_index)
    step = B * C * H * W
    bounds = _step_bounds(index, step, range(0, T))
    sparse = (bounds[-1] if T > 1 else 0) <= MAX_CONV_DENSITY * max(1, (T - 1) * step)
    for t0 in range(1, T, block):
        t1 = min(t0 + block, T)
        if sparse:
            part = index[bounds[t0 - 1] : bounds[t1 - 1]] - (t0 - 1) * step
            current = pool_current_events(part, (t1 - t0) * B, C, H, W, p, dtype)
        else:
            frames = as_uint8(spikes[t0 - 1 : t1 - 1]).reshape(-1, C, H, W).to(dtype)
            current = F.avg_pool2d(frames, p, stride=p, divisor_override=1)
        scan.run(t0, current.view(t1 - t0, B, C, H // p, W // p))
    out_index = spike_index(out).to(index_dtype(out.numel()))
    return out, scan.counts, index, out_index, sparse
