r"""Conv HM2-BP terms from the input PSP traces and the output coefficient events
(``docs/algorithm.md``, "Spike-train-level PSP", "Convolution and pooling").

The S-PSP of an output neuron :math:`o` from an input pixel :math:`i` in its receptive field is
(``spsp.py``) a sum over the post-side coefficient events :math:`(t, o, v)` (at most three per
output spike) of the input's geometric PSP traces:

.. math::  e_{o|i} = \sum_{\text{pairs}}\ \sum_{(t, o, v)} v\, A[t, i],

with one pair :math:`(v, C(A^{(a)} - A^{(b)}))` without a window and two,
:math:`(C v^{(a)}, A^{(a)})` and :math:`(-C v^{(b)}, A^{(b)})`, with the official window. A conv
layer has far fewer input pixels than output neurons at its first layer (784 against 8640 in the
paper CNN) and sparse output spikes, so scanning the input traces and gathering them at the output
events is the cheaper way there. Every event reads its receptive field, the patch
:math:`G_{(t,o)} = A[t, b, :, y s - p : y s - p + k, x s - p : x s - p + k]` (``[k, k, C_in]``,
one flat gather from the zero-padded channels-last traces), and

.. math::

    a_{ff}[o] &= \sum_{(t,o,v)} v\ \langle G_{(t,o)},\ W[c_o] \rangle
        &&\text{(T-PSP of the kernel, for } \sigma)\\
    \frac{\partial E}{\partial W[c_o]} &= \sum_{(t,o,v)} \delta_o (1+\sigma_o)\, v\ G_{(t,o)}
        &&\text{(one weighted } \texttt{embedding\_bag} \text{, bags } (b, c_o))\\
    h[b, \cdot] &\mathrel{+}= \delta_o\, v\ W[c_o] \odot G_{(t,o)}\ \text{ at the patch's pixels}
        &&\text{(the effect-ratio error, scattered back)}

The traces are formed for a block of samples at a time (``memory_budget``) and the events are
processed in chunks of at most ``PATCH_FLOATS`` gathered floats.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hm2bp.functional.blocks import sample_group
from hm2bp.functional.conv_events import ConvGeometry
from hm2bp.functional.current import as_uint8
from hm2bp.functional.psp import psp_traces
from hm2bp.functional.spsp import reset_events_from_index

PATCH_FLOATS = 1 << 22  # gathered patch floats per chunk of events (16 MiB in float32)


def _pairs(t_a, n_a, v_a, t_b, n_b, v_b, aa, ab, kernel):
    """``[(t, n, v, A)]``: event lists with their trace (module docstring)."""
    c = kernel.scale
    if kernel.window is None:
        return [(t_a, n_a, v_a, c * (aa - ab))]
    return [(t_a, n_a, c * v_a, aa), (t_b, n_b, -c * v_b, ab)]


def padded_traces(pre: Tensor, kernel, dtype: torch.dtype, padding: int) -> tuple[Tensor, Tensor]:
    """The two PSP traces ``(A_a, A_b)`` of 0/1 trains ``[T, g, C, H, W]`` (``psp.psp_traces``:
    shifted by ``Delta``, inputs before ``min_pre_time`` dropped), channels-last and zero-padded:
    ``[T, g, H + 2p, W + 2p, C]`` each, two halves of one buffer scanned together (one fused
    kernel per step)."""
    T, g, c, h, w = pre.shape
    p, shift, first = padding, kernel.shift, kernel.min_pre_time
    buf = torch.zeros(2, T, g, h + 2 * p, w + 2 * p, c, dtype=dtype, device=pre.device)
    src = as_uint8(pre).permute(0, 1, 3, 4, 2)  # [T, g, H, W, C]
    if T > shift + first:  # a spike at t lands at t + Delta
        buf[:, shift + first :, :, p : p + h, p : p + w] = src[first : T - shift].unsqueeze(0)
    decay = torch.tensor([kernel.decay_m, kernel.decay_s], dtype=dtype, device=pre.device).view(2, 1, 1, 1, 1)
    steps = buf.unbind(1)  # per-step views made once
    for t in range(shift + 1, T):
        torch.addcmul(steps[t], steps[t - 1], decay, out=steps[t])
    return buf[0], buf[1]


def _patches(table: Tensor, starts: Tensor, width: int) -> Tensor:
    """Receptive fields ``[n, k k C_in]`` (order ``k_y, k_x, c_i``) from the flat padded
    channels-last traces ``[T, g, Hp, Wp, C_in]``, given the flat ``starts`` ``[n, k]`` of their
    kernel rows. Each kernel row is ``width = k C_in`` contiguous floats, so the gather reads rows
    of an overlapping strided view of the table (one row starting at every element): ``k``
    indices per event instead of ``k^2 C_in``."""
    lines = table.as_strided((table.numel() - width + 1, width), (1, 1))
    return lines.index_select(0, starts.view(-1)).view(starts.shape[0], -1)


def _chunks(run: Tensor, chunk: int):
    """``(i0, i1)`` event ranges of about ``chunk`` events that never split a run (a neuron)."""
    n = run.numel()
    i0 = 0
    while i0 < n:
        i1 = min(i0 + chunk, n)
        if i1 < n:
            cut = int(torch.searchsorted(run, run[i1 : i1 + 1]))  # first event of the run at i1
            i1 = cut if cut > i0 else int(torch.searchsorted(run, run[i0 : i0 + 1], right=True))
        yield i0, i1
        i0 = i1


def _runs(n: Tensor, active: Tensor) -> Tensor:
    """Index in ``active`` (sorted unique neurons) of every event of the sorted list ``n``."""
    change = torch.ones_like(n, dtype=torch.bool)
    change[1:] = n[1:] != n[:-1]
    run = torch.cumsum(change, 0) - 1
    if run.numel() and int(run[-1]) + 1 == active.numel() and bool((active.index_select(0, run) == n).all()):
        return run  # the list covers every active neuron (the usual case): no search
    return torch.searchsorted(active, n)


def spsp_patches(pairs, active: Tensor, g: int, geom: ConvGeometry, hp: int, wp: int, patch: int) -> Tensor:
    """``E[a] = e_{o_a|RF(o_a)}`` ``[n_active, k k C_in]``: the S-PSP of every active output neuron
    from each input of its receptive field, ``sum_pairs sum_{(t, o, v)} v G_{(t,o)}`` (events
    sorted by neuron; one patch gather per event, one ``embedding_bag`` per chunk of events).
    Pairs that share their event lists (the official window's two traces) share the index work."""
    n_out = geom.c_out * geom.h_out * geom.w_out
    hw_out = geom.h_out * geom.w_out
    k, c_in, s = geom.k, geom.c_in, geom.stride
    E = None
    shared: dict[tuple[int, int], list] = {}  # (id(t), id(n)) -> the pairs with those event lists
    for t, n, v, table in pairs:
        if E is None:
            E = torch.zeros(active.numel(), patch, dtype=table.dtype, device=table.device)
        if n.numel():
            shared.setdefault((id(t), id(n)), [t, n, []])[2].append((v, table.reshape(-1)))
    for t, n, tables in shared.values():
        run = _runs(n, active)  # active-neuron number of every event
        b = torch.div(n, n_out, rounding_mode="floor")
        r = torch.remainder(n, hw_out)
        y = torch.div(r, geom.w_out, rounding_mode="floor")
        corner = (((t * g + b) * hp + y * s) * wp + (r - y * geom.w_out) * s) * c_in  # patch corner per event
        del b, r, y
        rows_of_patch = torch.arange(k, device=n.device) * (wp * c_in)
        for i0, i1 in _chunks(run, max(1, PATCH_FLOATS // patch)):
            starts = corner[i0:i1].unsqueeze(1) + rows_of_patch
            r0, r1 = int(run[i0]), int(run[i1 - 1]) + 1
            bags = torch.searchsorted(run[i0:i1], torch.arange(r0, r1, device=run.device))
            rows = torch.arange(i1 - i0, device=run.device)
            for v, flat in tables:
                G = _patches(flat, starts, k * c_in)
                E[r0:r1] += F.embedding_bag(rows, G, bags, mode="sum", per_sample_weights=v[i0:i1])
    return E


def input_trace_terms(pre_events, pre, post_index, geom: ConvGeometry, weight, neuron, rule, *, delta, active_out, o_out,
                      bias, want_h, group, memory_budget):
    """The active posts' terms of the conv rule from the input traces (module docstring):
    ``(grad_w part [C_out, C_in, k, k], h [B, C_in H W] or None, grad_b part or None)``.
    Arguments as for :func:`hm2bp.functional.conv_grad.conv_hm2bp_backward_events`."""
    dtype, device = weight.dtype, weight.device
    kernel = neuron.psp_kernel
    T, B = pre.shape[:2]
    ho, wo, c_out, c_in, k, p = geom.h_out, geom.w_out, geom.c_out, geom.c_in, geom.k, geom.padding
    hp, wp = geom.h + 2 * p, geom.w + 2 * p
    hw_out = ho * wo
    n_out = c_out * hw_out
    patch = k * k * c_in
    # per sample: the two padded traces (+ their difference) and E of every neuron at worst
    group = sample_group(B, 3 * T * c_in * hp * wp + n_out * patch, weight.element_size(), memory_budget, group)
    events = reset_events_from_index(post_index, T, B * n_out, kernel, dtype)  # n = b N_out + (c_o, y, x)
    w_rows = weight.permute(0, 2, 3, 1).reshape(c_out, patch)  # W[c_o] as a patch (k_y, k_x, c_i)
    acc = torch.zeros(c_out, patch, dtype=dtype, device=device)
    h_all = torch.zeros(B, hp, wp, c_in, dtype=dtype, device=device) if want_h else None
    grad_b = torch.zeros(c_out, dtype=dtype, device=device) if bias is not None else None
    bias_traces = None
    if bias is not None:  # the always-on input's traces [T]
        ba, bb = psp_traces(torch.ones(T, 1, dtype=dtype, device=device), kernel, dtype)
        bias_traces = (ba.view(-1), bb.view(-1))
    # flat offset of every patch element (k_y, k_x, c_i) from the patch corner in a padded map
    corner = (torch.arange(k, device=device).view(k, 1, 1) * wp + torch.arange(k, device=device).view(1, k, 1)) * c_in
    patch_offsets = (corner + torch.arange(c_in, device=device).view(1, 1, c_in)).view(-1)
    for b0 in range(0, B, group):
        b1 = min(b0 + group, B)
        g = b1 - b0
        blk = events.neurons(b0 * n_out, b1 * n_out)
        if blk.n_a.numel() == 0:
            continue  # no output spike in the block: only the silent terms (the caller's)
        aa, ab = padded_traces(pre[:, b0:b1], kernel, dtype, p)
        t_a, n_a = blk.t_a.long(), blk.n_a.long()
        same = blk.t_b is blk.t_a and blk.n_b is blk.n_a  # one event list for both traces: shared index work
        t_b, n_b = (t_a, n_a) if same else (blk.t_b.long(), blk.n_b.long())
        ev = [(t_a, n_a, blk.v_a), (t_b, n_b, blk.v_b)]
        pairs = _pairs(*ev[0], *ev[1], aa, ab, kernel)
        active = torch.unique_consecutive(ev[0][1])  # neurons with events (the lists share their neurons)
        E = spsp_patches(pairs, active, g, geom, hp, wp, patch)  # [n_active, patch]
        del aa, ab, pairs
        b = torch.div(active, n_out, rounding_mode="floor")
        co = torch.div(active - b * n_out, hw_out, rounding_mode="floor")
        idx = active + b0 * n_out  # neuron numbers in the batch
        d = delta.reshape(-1).index_select(0, idx)
        w_act = w_rows.index_select(0, co)  # [n_active, patch]
        coef = d
        e_bias = None
        if bias is not None:
            e_bias = torch.zeros(active.numel(), dtype=dtype, device=device)
            for (t, n, vb, trace) in _pairs(*ev[0], *ev[1], *bias_traces, kernel):
                e_bias.index_add_(0, torch.searchsorted(active, n), vb * trace.index_select(0, t))
        if rule.side_effect:
            a_ff = (E * w_act).sum(1)
            if e_bias is not None:
                a_ff = a_ff + bias.index_select(0, co) * e_bias
            o = o_out.reshape(-1).index_select(0, idx)
            coef = d * (1.0 + a_ff / (neuron.threshold * o.clamp(min=1)))
        if e_bias is not None:
            grad_b.index_add_(0, co, coef * e_bias)
        bags = torch.searchsorted(b * c_out + co, torch.arange(g * c_out, device=device))  # (b, c_o), sorted
        rows = torch.arange(active.numel(), device=device)
        acc += F.embedding_bag(rows, E, bags, mode="sum", per_sample_weights=coef).view(g, c_out, patch).sum(0)
        if want_h:
            r = active - b * n_out - co * hw_out
            y = torch.div(r, wo, rounding_mode="floor")
            x = r - y * wo
            base = ((b + b0) * hp + y * geom.stride) * wp + x * geom.stride
            dest = (base * c_in).unsqueeze(1) + patch_offsets
            h_all.view(-1).index_add_(0, dest.view(-1), E.mul_(w_act).mul_(d.unsqueeze(1)).view(-1))
        del E
    grad_w = acc.view(c_out, k, k, c_in).permute(0, 3, 1, 2)
    h = None
    if want_h:
        h = h_all[:, p : p + geom.h, p : p + geom.w].permute(0, 3, 1, 2).reshape(B, -1)  # drop the padding
    return grad_w, h, grad_b
