r"""Spike-train level PSP (S-PSP) in matrix form (spec §2, §7.2, eqs. H15/H16).

For post neuron :math:`i` with spikes :math:`t_f`, reset times :math:`r_1` and
:math:`r_f = t_{f-1} + T_{ref}`, and the never-reset input trace :math:`P_j` (``psp.py``):

.. math::

    e_{i|j} = \sum_f \Big[P_j(t_f) - a^{\,t_f - r_f}\, P_j(r_f)\Big]
    \quad\Longrightarrow\quad E_b = (S_b - R_b)\,P_b^\top .

:math:`R_b` holds :math:`a^{t_f-r_f}` at :math:`t=r_f`. With the official 4·τm window the
excluded early input spikes are removed with a correction at
:math:`b_f = t_f - W - 1 + \Delta` on each geometric trace separately, so in general

.. math::  E_b = C\,\big(X^{(a)}_b A^{(a)\top}_b - X^{(b)}_b A^{(b)\top}_b\big),

with sparse post-side coefficient rasters :math:`X` (at most three non-zeros per post spike).
This module builds the factors; ``grad.py`` contracts them without ever forming ``E``
during training. :func:`spsp` materialises ``E`` for tests and inspection.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hm2bp.functional.psp import PSPKernel, psp_traces


def reset_coefficients(post: Tensor, kernel: PSPKernel, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Post-side coefficient rasters ``(X_a, X_b)``, each ``[T, B, N_out]``.

    Without a window ``X_a == X_b == S - R``. ``post`` must respect refractoriness
    (inter-spike interval > ``kernel.refractory``), as every simulated train does.
    """
    T = post.shape[0]
    device = post.device
    flat_shape = (T, post[0].numel())
    xa = torch.zeros(flat_shape, dtype=dtype, device=device)  # [T, B*N_out]
    t_f, n_f = post.reshape(flat_shape).nonzero(as_tuple=True)  # time-major order
    if t_f.numel() == 0:
        xa = xa.view(post.shape)
        return xa, xa.clone() if kernel.window is not None else xa
    order = torch.argsort(n_f, stable=True)  # group by neuron, times stay ascending
    t_f, n_f = t_f[order], n_f[order]
    prev = torch.full_like(t_f, -1)
    same = n_f[1:] == n_f[:-1]
    prev[1:] = torch.where(same, t_f[:-1], prev[1:])  # previous spike of the same neuron
    r_f = torch.where(prev >= 0, prev + kernel.refractory, torch.full_like(prev, kernel.first_reset))
    a, b = kernel.decay_m, kernel.decay_s
    ta = torch.tensor(a, dtype=dtype, device=device)
    tb = torch.tensor(b, dtype=dtype, device=device)
    reset_a = torch.pow(ta, (t_f - r_f).to(dtype))
    xa.index_put_((t_f, n_f), torch.ones(t_f.shape, dtype=dtype, device=device), accumulate=True)
    if kernel.window is None:
        xa.index_put_((r_f, n_f), -reset_a, accumulate=True)
        xa = xa.view(post.shape)
        return xa, xa
    xb = xa.clone()
    b_f = t_f - kernel.window - 1 + kernel.shift
    windowed = (t_f - kernel.window - 1) >= 0
    keep_reset = ~windowed | (r_f >= b_f)
    # reset term at r_f (both traces), unless the window removed every input before r_f
    idx_r = (r_f[keep_reset], n_f[keep_reset])
    xa.index_put_(idx_r, -reset_a[keep_reset], accumulate=True)
    xb.index_put_(idx_r, -reset_a[keep_reset], accumulate=True)
    if bool(windowed.any()):
        w = windowed
        tf, rf, bf = t_f[w], r_f[w], b_f[w]
        idx_b = (bf, n_f[w])
        cut_a = -torch.pow(ta, (tf - bf).to(dtype))
        cut_b = -torch.pow(tb, (tf - bf).to(dtype))
        late = rf >= bf  # reset after the window edge: its own trace is windowed too
        lag_rb = (rf - bf).clamp(min=0).to(dtype)
        back = torch.pow(ta, (tf - rf).to(dtype))
        back_a = torch.where(late, back * torch.pow(ta, lag_rb), torch.zeros_like(back))
        back_b = torch.where(late, back * torch.pow(tb, lag_rb), torch.zeros_like(back))
        xa.index_put_(idx_b, cut_a + back_a, accumulate=True)
        xb.index_put_(idx_b, cut_b + back_b, accumulate=True)
    return xa.view(post.shape), xb.view(post.shape)


def spsp_factors(pre: Tensor, post: Tensor, kernel: PSPKernel, dtype: torch.dtype = torch.float32) -> list[tuple[Tensor, Tensor]]:
    """Factor pairs ``[(X, A), ...]`` with ``E_b = sum_pairs X_b^T A_b`` (time contracted).

    ``pre`` ``[T, B, N_in]``, ``post`` ``[T, B, N_out]``; every ``X`` is ``[T, B, N_out]`` and
    every ``A`` ``[T, B, N_in]``. One pair without a window (``X = S - R``, ``A = P``), two with it.
    """
    xa, xb = reset_coefficients(post, kernel, dtype)
    aa, ab = psp_traces(pre, kernel, dtype)
    if kernel.window is None:
        return [(xa, kernel.scale * (aa - ab))]
    return [(kernel.scale * xa, aa), (-kernel.scale * xb, ab)]


def spsp(
    pre: Tensor,
    post: Tensor,
    *,
    tau_m: float = 64.0,
    tau_s: float = 8.0,
    refractory: int = 2,
    convention: str = "exact",
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Materialised S-PSP ``e[b, i, j]`` of post ``i`` from pre ``j``, ``[B, N_out, N_in]``.

    ``pre`` ``[T, B, N_in]`` and ``post`` ``[T, B, N_out]`` are 0/1 spike trains. This is the
    definition (H5) evaluated in matrix form, without the official silent-neuron constants
    (those belong to the learning rule, ``grad.py``). For tests and inspection only: training
    never builds this tensor.
    """
    kernel = PSPKernel.make(convention, tau_m, tau_s, refractory)
    return materialise(spsp_factors(pre, post, kernel, dtype))


def materialise(pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
    """``E[b, i, j] = sum_pairs sum_t X[t, b, i] A[t, b, j]`` (small layers and tests only)."""
    out = None
    for x, a in pairs:
        term = torch.einsum("tbi,tbj->bij", x, a)
        out = term if out is None else out + term
    return out


def adjoint_trace(post: Tensor, kernel: PSPKernel, dtype: torch.dtype = torch.float32) -> Tensor:
    r"""Post-side adjoint trace ``Q`` ``[T, B, N_out]`` with ``E_b = Q_b^T S_b`` (S: pre spikes).

    Moving the PSP kernel from the input to the output side,

    .. math::

        Q[s] = C \sum_{t \ge s + \Delta} \big(X^{(a)}[t]\, a^{\,t-s-\Delta} - X^{(b)}[t]\, b^{\,t-s-\Delta}\big),
        \qquad e_{i|j} = \sum_s Q_i[s]\, S_j[s],

    a reverse-time geometric scan over the (sparse) post coefficients. Every S-PSP product then
    contracts ``Q`` with the 0/1 input spikes, which are sparse (gathers instead of dense GEMMs).
    Rows ``s < min_pre_time`` are zero (official: inputs at t = 0 never count).
    """
    from hm2bp.functional._threads import single_thread

    xa, xb = reset_coefficients(post, kernel, dtype)
    T = post.shape[0]
    q = torch.zeros(post.shape, dtype=dtype, device=post.device)
    shift = kernel.shift
    if shift >= T:
        return q
    ga = torch.zeros(post.shape[1:], dtype=dtype, device=post.device)
    gb = torch.zeros_like(ga) if xb is not xa else None
    with single_thread(post.device):
        for t in range(T - 1, shift - 1, -1):
            ga.mul_(kernel.decay_m).add_(xa[t])
            s = t - shift
            if gb is None:
                # single coefficient raster: C (a-trace - b-trace) of the same X
                q[s] = ga
            else:
                gb.mul_(kernel.decay_s).add_(xb[t])
                torch.sub(ga, gb, out=q[s])
        if gb is None:
            # second pass for the b-trace when X_a == X_b
            gb = torch.zeros_like(ga)
            for t in range(T - 1, shift - 1, -1):
                gb.mul_(kernel.decay_s).add_(xa[t])
                q[t - shift].sub_(gb)
    q.mul_(kernel.scale)
    if kernel.min_pre_time > 0:
        q[: kernel.min_pre_time] = 0
    return q
