r"""Conv HM2-BP terms as GEMMs over time (``docs/algorithm.md``, "Spike-train-level PSP",
"Convolution and pooling").

Once a conv layer has learned, its spikes are dense enough in time (a few per cent of the
neuron-steps, on most output positions at most steps) that gathering a row per event costs more
than a dense product whose contraction runs over the time steps. With the post-side adjoint
trace :math:`Q` (``spsp.adjoint_trace``), the S-PSP of output neuron :math:`(c_o, \ell)` (channel,
output position :math:`(y_\ell, x_\ell)`; stride :math:`\lambda`, padding :math:`p`) from the inputs of
its receptive field is

.. math::  E[\ell, c_o, :] = \sum_s Q[s, c_o, \ell]\ U[s, \ell, :],
    \qquad U[s, \ell, (c_i, k_y, k_x)] = S[s, c_i,\ y_\ell \lambda + k_y - p,\ x_\ell \lambda + k_x - p],

one batched GEMM per sample (batch: the ``H' W'`` output positions, ``[C_out, T] @ [T, C_in k^2]``),
``U`` being ``unfold`` of the 0/1 input frames. Every term of the rule then follows from ``E`` alone:

.. math::

    a_{ff}[c_o, \ell] &= \langle E[\ell, c_o], W[c_o] \rangle\ (+\, b_{c_o} \textstyle\sum_s Q[s, c_o, \ell]),
    \qquad \sigma = a_{ff} / (\nu\, o),\\
    \frac{\partial E}{\partial W[c_o]} &\mathrel{+}= \sum_\ell \delta (1 + \sigma)\ E[\ell, c_o],
    \qquad h[b, \cdot] = \mathrm{fold}\Big(\sum_{c_o} \delta\, W[c_o] \odot E[\ell, c_o]\Big)

(active posts only; the caller adds the silent ones). The work is ``T H' W' C_out C_in k^2``
multiply-adds per sample at BLAS speed, independent of the spike counts, so
:func:`hm2bp.functional.conv_grad.choose_path` picks it only when the event paths would gather
more. :math:`Q` is scanned for a block of samples at a time (sized by ``memory_budget``, as on the
other paths); ``U`` is formed one output row of one sample at a time (``W' C_in k^2 T`` floats,
time innermost so that each GEMM reads it transposed), and ``E`` holds one sample.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hm2bp.functional.blocks import sample_group
from hm2bp.functional.conv_events import ConvGeometry
from hm2bp.functional.current import as_uint8
from hm2bp.functional.spsp import adjoint_trace, reset_events_from_index


def time_gemm_terms(pre_events, pre, post_index, geom: ConvGeometry, weight, neuron, rule, *, delta, active_out, o_out,
                    bias, want_h, group, memory_budget):
    """The active posts' terms of the conv rule from per-neuron S-PSP patches computed as GEMMs over
    time (module docstring): ``(grad_w part [C_out, C_in, k, k], h [B, C_in H W] or None, grad_b
    part or None)``. Arguments as for :func:`hm2bp.functional.conv_grad.conv_hm2bp_backward_events`
    (``pre_events`` is unused: the dense input trains ``pre`` are unfolded)."""
    del pre_events
    dtype, device = weight.dtype, weight.device
    kernel = neuron.psp_kernel
    T, B = pre.shape[:2]
    c_out, k = geom.c_out, geom.k
    L = geom.h_out * geom.w_out
    n_out = c_out * L
    patch = geom.c_in * k * k
    conv = dict(kernel_size=k, padding=geom.padding, stride=geom.stride)
    group = sample_group(B, 2 * (T + kernel.shift) * n_out, weight.element_size(), memory_budget, group)
    events = reset_events_from_index(post_index, T, B * n_out, kernel, dtype)
    workspace = torch.empty(2 * (T + kernel.shift) * group * n_out, dtype=dtype, device=device)
    w_rows = weight.reshape(c_out, patch)
    acc = torch.zeros(c_out, patch, dtype=dtype, device=device)
    h_all = torch.zeros(B, geom.c_in, geom.h, geom.w, dtype=dtype, device=device) if want_h else None
    grad_b = torch.zeros(c_out, dtype=dtype, device=device) if bias is not None else None
    spikes = as_uint8(pre)
    p, st = geom.padding, geom.stride
    hp, wp = geom.h + 2 * p, geom.w + 2 * p
    frames = torch.zeros(geom.c_in, hp, wp, T, dtype=dtype, device=device)  # one sample, zero-padded, time last
    E = torch.empty(geom.h_out, geom.w_out, c_out, patch, dtype=dtype, device=device)
    win = torch.empty(geom.w_out, geom.c_in, k, k, T, dtype=dtype, device=device)
    for b in range(B):
        if b % group == 0:  # Q of the next block of samples: one scan for the block
            b0, b1 = b, min(b + group, B)
            blk = events.neurons(b0 * n_out, b1 * n_out)
            q = None
            if blk.n_a.numel():
                q = adjoint_trace((T, b1 - b0, n_out), kernel, dtype, events=blk, workspace=workspace)
        if q is None or not bool(active_out[b].any()):
            continue  # no output spike: only the silent terms (the caller's)
        q_b = q[:, b - b0]  # [T, C_out L]
        q_pos = q_b.view(T, c_out, geom.h_out, geom.w_out).permute(2, 3, 1, 0).contiguous()  # [H', W', C_out, T]
        frames[:, p : p + geom.h, p : p + geom.w].copy_(spikes[:, b].permute(1, 2, 3, 0))
        for y in range(geom.h_out):
            rows = frames[:, y * st : y * st + k].unfold(2, k, st)  # [C_in, k_y, W', T, k_x]
            win.copy_(rows.permute(2, 0, 1, 4, 3))  # [W', C_in, k_y, k_x, T]
            torch.bmm(q_pos[y], win.view(geom.w_out, patch, T).transpose(1, 2), out=E[y])
        E_l = E.view(L, c_out, patch)
        d = delta[b].reshape(c_out, L).t()  # [L, C_out]
        act = active_out[b].reshape(c_out, L).t().to(dtype)
        coef = d_act = d * act
        e_bias = q_b.view(T, c_out, L).sum(0).t() if bias is not None else None  # [L, C_out]
        if rule.side_effect:
            a_ff = (E_l * w_rows).sum(2)
            if e_bias is not None:
                a_ff = a_ff + bias * e_bias
            o = o_out[b].reshape(c_out, L).t()
            coef = coef * (1.0 + a_ff / (neuron.threshold * o.clamp(min=1)))
        acc += (E_l * coef.unsqueeze(2)).sum(0)
        if e_bias is not None:
            grad_b += (e_bias * coef).sum(0)
        if want_h:
            h_patch = (E_l * (d_act.unsqueeze(2) * w_rows)).sum(1).t()  # [patch, L]
            h_all[b] += F.fold(h_patch.unsqueeze(0), (geom.h, geom.w), **conv)[0]
    h = h_all.reshape(B, -1) if want_h else None
    return acc.view(c_out, geom.c_in, k, k), h, grad_b
