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
    spikes = post.bool()
    xa = torch.zeros(post.shape, dtype=dtype, device=device)
    nz = spikes.nonzero(as_tuple=True)  # (t, *idx) of every post spike
    if nz[0].numel() == 0:
        return xa, xa.clone() if kernel.window is not None else xa
    time = torch.arange(T, device=device).view(-1, *([1] * (post.dim() - 1)))
    last = torch.where(spikes, time, torch.full_like(time, -1)).cummax(0).values
    prev = torch.full(post.shape, -1, dtype=last.dtype, device=device)
    prev[1:] = last[:-1]  # last spike strictly before t
    t_f = nz[0]
    rest = nz[1:]
    p = prev[nz]
    r_f = torch.where(p >= 0, p + kernel.refractory, torch.full_like(p, kernel.first_reset))
    a, b = kernel.decay_m, kernel.decay_s
    reset_a = torch.pow(torch.tensor(a, dtype=dtype, device=device), (t_f - r_f).to(dtype))
    ones = torch.ones(t_f.shape, dtype=dtype, device=device)
    xa.index_put_((t_f, *rest), ones, accumulate=True)
    if kernel.window is None:
        xa.index_put_((r_f, *rest), -reset_a, accumulate=True)
        return xa, xa
    xb = xa.clone()
    b_f = t_f - kernel.window - 1 + kernel.shift
    windowed = (t_f - kernel.window - 1) >= 0
    keep_reset = ~windowed | (r_f >= b_f)
    # reset term at r_f (both traces), unless the window removed every input before r_f
    idx_r = (r_f[keep_reset], *(x[keep_reset] for x in rest))
    xa.index_put_(idx_r, -reset_a[keep_reset], accumulate=True)
    xb.index_put_(idx_r, -reset_a[keep_reset], accumulate=True)
    if windowed.any():
        w = windowed
        tf, rf, bf = t_f[w], r_f[w], b_f[w]
        idx_b = (bf, *(x[w] for x in rest))
        ta = torch.tensor(a, dtype=dtype, device=device)
        tb = torch.tensor(b, dtype=dtype, device=device)
        cut_a = -torch.pow(ta, (tf - bf).to(dtype))
        cut_b = -torch.pow(tb, (tf - bf).to(dtype))
        late = rf >= bf  # reset after the window edge: its own trace is windowed too
        back_a = torch.where(late, torch.pow(ta, (tf - rf).to(dtype)) * torch.pow(ta, (rf - bf).clamp(min=0).to(dtype)), 0)
        back_b = torch.where(late, torch.pow(ta, (tf - rf).to(dtype)) * torch.pow(tb, (rf - bf).clamp(min=0).to(dtype)), 0)
        xa.index_put_(idx_b, cut_a + back_a, accumulate=True)
        xb.index_put_(idx_b, cut_b + back_b, accumulate=True)
    return xa, xb


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
