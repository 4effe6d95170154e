r"""Synaptic current of 0/1 spike trains, event-driven when they are sparse
(``docs/algorithm.md``, "Neuron model").

.. math::  I[t] = W\,s[t] \quad (+\,b),\qquad I_i[t] = \sum_{j:\ s_j[t] = 1} w_{ij}.

MNIST-like inputs are ~97 % zeros, so the current is gathered: for every (step, sample) row the
columns of :math:`W` of the inputs that fired are summed (``embedding_bag``), about
``nnz(s) * N_out`` additions instead of the dense ``T B N_in N_out`` multiply-adds. Above
``max_density`` the dense GEMM is cheaper and is used instead; both give the same sums up to
float summation order.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_SPARSE_DENSITY = 0.1


def as_uint8(spikes: Tensor) -> Tensor:
    """A 0/1 spike tensor as ``uint8`` without a copy when it is ``bool`` (bool -> float casts
    are several times slower than uint8 -> float on CPU)."""
    if spikes.dtype == torch.bool:
        return spikes.view(torch.uint8)
    return spikes


def index_dtype(size: int) -> torch.dtype:
    """int32 for indices below ``size`` when it fits (half the memory of int64), else int64."""
    return torch.int32 if size < 2**31 else torch.int64


def spike_index(spikes: Tensor) -> Tensor:
    """Flat row-major indices of the non-zero entries of ``spikes``, ascending.

    For 1-byte trains (``bool``/``uint8``) the bytes are first scanned 8 at a time as ``int64``
    words, and only the non-zero words are expanded: at the few-percent densities of spike trains
    that is several times fewer elements for ``nonzero`` to visit than one byte at a time."""
    flat = as_uint8(spikes).reshape(-1)
    m = flat.numel() // 8 * 8
    if flat.dtype != torch.uint8 or m == 0 or flat.storage_offset() % 8:  # int64 words need 8-byte alignment
        return flat.nonzero().squeeze(1)
    words = flat[:m].view(torch.int64).nonzero().squeeze(1)  # ascending
    hits = flat[:m].view(-1, 8).index_select(0, words).nonzero()  # [k, 2]: (word, byte), row-major
    index = words.index_select(0, hits[:, 0]).mul_(8).add_(hits[:, 1])
    if m < flat.numel():
        index = torch.cat([index, flat[m:].nonzero().squeeze(1) + m])
    return index


def gather_current(index: Tensor, spikes: Tensor, weight_t: Tensor, *, offset: int = 0) -> Tensor:
    """``s W^T`` of ``spikes`` ``[..., N_in]`` from its non-zero flat indices ``index`` (minus
    ``offset``; ascending, as :func:`spike_index` gives them): ``[..., N_out]``.

    One bag of weight rows per ``(..., )`` row of ``spikes``; floating-point spikes weight their
    rows by their values, integer/bool spikes count as 1.
    """
    n_in, n_out = weight_t.shape
    lead = spikes.shape[:-1]
    n_rows = spikes[..., 0].numel()
    index = index - offset if offset else index
    rows, cols = index // n_in, index % n_in
    offsets = torch.zeros(n_rows, dtype=cols.dtype, device=weight_t.device)
    if n_rows > 1:
        offsets[1:] = torch.bincount(rows, minlength=n_rows)[:-1].cumsum(0)
    values = spikes.reshape(-1)[index].to(weight_t.dtype) if spikes.is_floating_point() else None
    out = F.embedding_bag(cols, weight_t, offsets, mode="sum", per_sample_weights=values)
    return out.view(*lead, n_out)


def synaptic_current(
    spikes: Tensor, weight_t: Tensor, *, max_density: float | None = None, return_events: bool = False
) -> Tensor | tuple[Tensor, Tensor | None]:
    """``I = s W^T`` for spikes ``[..., N_in]`` and ``weight_t`` ``[N_in, N_out]`` (contiguous).

    Returns ``[..., N_out]`` in ``weight_t``'s dtype. Floating-point spikes keep their values
    (gathered as per-event weights); ``bool``/integer spikes count as 0/1. With
    ``return_events`` also returns the flat (row-major) indices of the non-zero spikes, or
    ``None`` when the dense GEMM was used.
    """
    max_density = MAX_SPARSE_DENSITY if max_density is None else max_density
    index = spike_index(spikes)
    if index.numel() > max_density * spikes.numel():
        out = as_uint8(spikes).to(weight_t.dtype) @ weight_t
        return (out, None) if return_events else out
    out = gather_current(index, spikes, weight_t)
    return (out, index) if return_events else out
