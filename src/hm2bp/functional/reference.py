r"""Inspection-only S-PSP code: the full ``[B, N_out, N_in]`` S-PSP matrix and its factor pairs.

``docs/algorithm.md``, "Spike-train-level PSP". Training never builds these tensors (``spsp.py``
contracts the adjoint trace with the input events instead); tests pin the training code to them
and them to the pairwise brute force.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hm2bp.functional.params import PSPKernel
from hm2bp.functional.psp import psp_traces
from hm2bp.functional.spsp import reset_events


def reset_coefficients(post: Tensor, kernel: PSPKernel, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Post-side coefficient rasters ``(X_a, X_b)``, each ``[T, B, N_out]``.

    Without a window ``X_a == X_b == S - R`` (the same tensor). ``post`` must respect
    refractoriness (inter-spike interval > ``kernel.refractory``), as every simulated train does.
    """
    return reset_events(post, kernel, dtype).dense(tuple(post.shape), dtype)


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


def spsp_matrix(
    pre: Tensor,
    post: Tensor,
    kernel: PSPKernel | None = None,
    *,
    convention: str = "exact",
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Materialised S-PSP ``e[b, i, j]`` of post ``i`` from pre ``j``, ``[B, N_out, N_in]``.

    ``pre`` ``[T, B, N_in]`` and ``post`` ``[T, B, N_out]`` are 0/1 spike trains; ``kernel`` the
    S-PSP kernel (a neuron record's ``psp_kernel``), by default that of ``convention`` for the
    official neuron constants. This is the definition ("Spike-train-level PSP") evaluated in
    matrix form, without the official silent-neuron constants (those belong to the learning
    rule, ``rule.py``). For tests and inspection only: training never builds this tensor.
    ``hm2bp.functional.spsp`` is this function.
    """
    if kernel is None:
        kernel = PSPKernel.make(convention)
    return materialise(spsp_factors(pre, post, kernel, dtype))


def materialise(pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
    """``E[b, i, j] = sum_pairs sum_t X[t, b, i] A[t, b, j]`` (small layers and tests only)."""
    out = None
    for x, a in pairs:
        term = torch.einsum("tbi,tbj->bij", x, a)
        out = term if out is None else out + term
    return out
