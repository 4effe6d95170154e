r"""Spike-train level PSP (S-PSP) in matrix form (``docs/algorithm.md``, "Spike-train-level PSP").

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
during training. ``reference.spsp_matrix`` materialises ``E`` for tests and inspection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hm2bp.functional.current import MAX_SPARSE_DENSITY, as_uint8, index_dtype
from hm2bp.functional.params import PSPKernel
from hm2bp.functional.scan_backend import use_triton


@dataclass(frozen=True)
class ResetEvents:
    """Non-zeros of the post-side coefficient rasters of :func:`reset_coefficients`:
    ``X_a[t_a, n_a] += v_a`` and ``X_b[t_b, n_b] += v_b``; ``n`` indexes the flattened
    ``post[0]`` (sample-major) and each list is sorted by it. Without a window the two lists are
    the same tensors."""

    t_a: Tensor
    n_a: Tensor
    v_a: Tensor
    t_b: Tensor
    n_b: Tensor
    v_b: Tensor

    @property
    def shared(self) -> bool:
        return self.t_b is self.t_a and self.n_b is self.n_a and self.v_b is self.v_a

    def neurons(self, lo: int, hi: int) -> "ResetEvents":
        """The events of flattened neurons ``lo <= n < hi``, renumbered from 0 (a block of
        samples). The lists are sorted by ``n`` (:func:`reset_events`), so this is a slice."""
        bounds = torch.tensor([lo, hi], dtype=self.n_a.dtype, device=self.n_a.device)
        i0, i1 = torch.searchsorted(self.n_a, bounds).tolist()
        a = (self.t_a[i0:i1], self.n_a[i0:i1] - lo, self.v_a[i0:i1])
        if self.shared:
            return ResetEvents(*a, *a)
        if self.t_b is self.t_a and self.n_b is self.n_a:  # one event list, two coefficient sets (window)
            return ResetEvents(*a, a[0], a[1], self.v_b[i0:i1])
        j0, j1 = torch.searchsorted(self.n_b, bounds).tolist()
        return ResetEvents(*a, self.t_b[j0:j1], self.n_b[j0:j1] - lo, self.v_b[j0:j1])

    def dense(
        self, shape: tuple[int, ...], dtype: torch.dtype, *, pad: int = 0, workspace: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(X_a, X_b)`` of ``shape = (T, ...)``, each with ``pad`` extra zero rows at the end;
        the same tensor twice when the lists are shared. ``workspace`` (at least
        ``2 (T + pad) prod(shape[1:])`` elements of ``dtype``) is reused instead of allocating."""
        rows, n = shape[0] + pad, math.prod(shape[1:])
        full = (rows, *shape[1:])
        if workspace is None:
            workspace = torch.empty(2 * rows * n, dtype=dtype, device=self.t_a.device)
        xa = workspace[: rows * n].view(rows, n).zero_()
        xa.view(-1).index_add_(0, self.t_a.long() * n + self.n_a, self.v_a.to(dtype))  # duplicates add up
        if self.shared:
            xa = xa.view(full)
            return xa, xa
        xb = workspace[rows * n : 2 * rows * n].view(rows, n).zero_()
        xb.view(-1).index_add_(0, self.t_b.long() * n + self.n_b, self.v_b.to(dtype))
        return xa.view(full), xb.view(full)


def reset_events(
    post: Tensor, kernel: PSPKernel, dtype: torch.dtype = torch.float32, *, index: Tensor | None = None
) -> ResetEvents:
    """The coefficients of :func:`reset_coefficients` as event lists (at most three per spike).

    ``post`` must respect refractoriness (inter-spike interval > ``kernel.refractory``), as
    every simulated train does. ``index``: the flat row-major indices of ``post``'s spikes when
    the caller has them (the forward lists them), in ascending order.
    """
    if index is None:
        index = as_uint8(post).reshape(-1).nonzero().squeeze(1)
    return reset_events_from_index(index, post.shape[0], post[0].numel(), kernel, dtype)


def reset_events_from_index(
    index: Tensor, T: int, n: int, kernel: PSPKernel, dtype: torch.dtype = torch.float32
) -> ResetEvents:
    """:func:`reset_events` of ``T`` steps of ``n`` neurons given only the flat indices
    ``t * n + neuron`` of the spikes, in time-major order (ascending ``t``; any neuron order
    within a step): for a layer whose trains are kept as index lists, or whose neurons are
    numbered in another layout than the train (channels-last conv maps)."""
    device = index.device
    itype = index_dtype(T * n + T)
    t_f, n_f = (index // n).to(itype), (index % n).to(itype)  # time-major order
    n_f, order = torch.sort(n_f, stable=True)  # group by neuron, times stay ascending
    t_f = t_f[order]
    del order
    prev = torch.full_like(t_f, -1)
    same = n_f[1:] == n_f[:-1]
    prev[1:] = torch.where(same, t_f[:-1], prev[1:])  # previous spike of the same neuron
    r_f = torch.where(prev >= 0, prev + kernel.refractory, torch.full_like(prev, kernel.first_reset))
    ta = torch.tensor(kernel.decay_m, dtype=dtype, device=device)
    tb = torch.tensor(kernel.decay_s, dtype=dtype, device=device)
    reset_a = torch.pow(ta, (t_f - r_f).to(dtype))
    ones = torch.ones(t_f.shape, dtype=dtype, device=device)
    if kernel.window is None:
        # per spike (+1 at t_f, -a^(t_f - r_f) at r_f), kept next to each other: still sorted by n
        ev = (_interleave(t_f, r_f), _interleave(n_f, n_f), _interleave(ones, -reset_a))
        return ResetEvents(*ev, *ev)
    b_f = t_f - kernel.window - 1 + kernel.shift
    windowed = (t_f - kernel.window - 1) >= 0
    # reset term at r_f (both traces), unless the window removed every input before r_f
    keep_reset = (~windowed | (r_f >= b_f)).to(dtype)
    late = r_f >= b_f  # reset after the window edge: its own trace is windowed too
    lag_rb = (r_f - b_f).clamp(min=0).to(dtype)
    back = torch.pow(ta, (t_f - r_f).to(dtype))
    w = windowed.to(dtype)  # spikes without a window get a zero cut event (at t_f, a valid index)
    lag_tb = (t_f - b_f).to(dtype)
    cut_a = w * (torch.where(late, back * torch.pow(ta, lag_rb), 0.0) - torch.pow(ta, lag_tb))
    cut_b = w * (torch.where(late, back * torch.pow(tb, lag_rb), 0.0) - torch.pow(tb, lag_tb))
    t_cut = torch.where(windowed, b_f, t_f)
    t_all, n_all = _interleave(t_f, r_f, t_cut), _interleave(n_f, n_f, n_f)
    v_a = _interleave(ones, -reset_a * keep_reset, cut_a)
    v_b = _interleave(ones, -reset_a * keep_reset, cut_b)
    return ResetEvents(t_all, n_all, v_a, t_all, n_all, v_b)


def _interleave(*parts: Tensor) -> Tensor:
    """``[p0[0], p1[0], ..., p0[1], p1[1], ...]``: the events of one spike stay adjacent."""
    return torch.stack(parts, dim=1).reshape(-1)


def adjoint_trace(
    post: Tensor | tuple[int, ...],
    kernel: PSPKernel,
    dtype: torch.dtype = torch.float32,
    *,
    events: ResetEvents | None = None,
    workspace: Tensor | None = None,
) -> Tensor:
    r"""Post-side adjoint trace ``Q`` ``[T, B, N_out]`` with ``E_b = Q_b^T S_b`` (S: pre spikes).

    Moving the PSP kernel from the input to the output side,

    .. math::

        Q[s] = C \sum_{t \ge s + \Delta} \big(X^{(a)}[t]\, a^{\,t-s-\Delta} - X^{(b)}[t]\, b^{\,t-s-\Delta}\big),
        \qquad e_{i|j} = \sum_s Q_i[s]\, S_j[s],

    two reverse-time geometric scans :math:`G[t] = X[t] + d\,G[t+1]` over the (sparse) post
    coefficients, run in place, then :math:`Q[s] = C(G_a - G_b)[s+\Delta]`. Rows
    ``s < min_pre_time`` are zero (official: inputs at t = 0 never count). ``events`` (from
    :func:`reset_events` for exactly this ``post``) saves recomputing them; ``workspace`` (see
    :meth:`ResetEvents.dense`) is reused for the two scans, and the result is a view into it.
    ``post`` may be just the shape ``(T, ...)`` of the trains when ``events`` is given (the
    neurons numbered as the events number them). Under the Triton backend (``kernel.scan_backend``)
    both scans and the difference are one fused kernel (``triton_traces.adjoint_scan``).
    """
    if isinstance(post, Tensor):
        shape, device = tuple(post.shape), post.device
        if events is None:
            events = reset_events(post, kernel, dtype)
    else:  # only the shape of the trains: the events say where the spikes are
        shape, device = tuple(post), events.t_a.device
    T = shape[0]
    shift = kernel.shift
    # Delta zero rows after T: once the scans are done, q[s] = (G_a - G_b)[s + Delta] is a view
    rows, n = T + shift, math.prod(shape[1:])
    if workspace is None:
        workspace = torch.empty(2 * rows * n, dtype=dtype, device=device)
    ga, gb = events.dense(shape, dtype, pad=shift, workspace=workspace)
    if use_triton(kernel.scan_backend, ga):  # one fused kernel for both scans (triton_traces)
        from hm2bp.functional.triton_traces import adjoint_scan

        q = adjoint_scan(workspace, rows, n, gb is ga, decay_a=kernel.decay_m, decay_b=kernel.decay_s,
                         scale=kernel.scale, shift=shift, min_pre_time=kernel.min_pre_time)
        return q.view(shape)
    if gb is ga:  # one raster for both traces: the b-trace starts as a copy in the second half
        gb = workspace[rows * n : 2 * rows * n].view(ga.shape)
        gb.copy_(ga)
    # both traces in one strided view [2, rows, n] (the two halves of the workspace): one fused
    # kernel per step
    both = workspace[: 2 * rows * n].view(2, rows, n)
    decay = torch.tensor([kernel.decay_m, kernel.decay_s], dtype=dtype, device=device).view(2, 1)
    steps = both.unbind(1)  # per-step views made once (Python indexing per step costs µs)
    for t in range(T - 2, -1, -1):
        torch.addcmul(steps[t], steps[t + 1], decay, out=steps[t])
    q = ga.sub_(gb)[shift:]
    del gb
    q.mul_(kernel.scale)
    if kernel.min_pre_time > 0:
        q[: kernel.min_pre_time] = 0
    return q


@dataclass(frozen=True)
class InputEvents:
    """0/1 input spikes ``[T, B, N_in]`` as events sorted by (sample, input, time)."""

    s: Tensor  # time step
    b: Tensor  # sample
    j: Tensor  # input
    shape: tuple[int, int, int]

    @classmethod
    def from_flat(cls, index: Tensor, shape: tuple[int, int, int]) -> "InputEvents":
        """From flat row-major indices into ``[T, B, N_in]`` (any order; ``nonzero`` of the trains).

        Indices are int32 when ``T B N_in < 2^31`` (:func:`index_dtype`: half the memory)."""
        T, B, n_in = shape
        key = index.to(index_dtype(T * B * n_in), copy=True)  # modified in place below
        t = key // (B * n_in)
        key.sub_(t * (B * n_in)).mul_(T).add_(t)  # (b, j, t) as one key: (b N_in + j) T + t
        del t
        key, _ = torch.sort(key)  # unique keys: no tie order to keep
        s = key % T
        key.floor_divide_(T)  # b N_in + j
        return cls(s, key // n_in, key.remainder_(n_in), (T, B, n_in))

    @classmethod
    def from_spikes(cls, spikes: Tensor) -> "InputEvents":
        return cls.from_flat(as_uint8(spikes).reshape(-1).nonzero().squeeze(1), tuple(spikes.shape))

    def density(self) -> float:
        return self.s.numel() / max(1, math.prod(self.shape))

    def samples(self, lo: int, hi: int) -> "InputEvents":
        """Events of samples ``lo <= b < hi``, renumbered from 0 (a slice: sorted by sample)."""
        bounds = torch.tensor([lo, hi], dtype=self.b.dtype, device=self.b.device)
        i0, i1 = torch.searchsorted(self.b, bounds).tolist()
        T, _, n_in = self.shape
        return InputEvents(self.s[i0:i1], self.b[i0:i1] - lo, self.j[i0:i1], (T, hi - lo, n_in))


def spsp_from_trace(q: Tensor, pre: Tensor | InputEvents, *, max_density: float | None = None) -> Tensor:
    r"""Per-sample S-PSP matrices, transposed: ``e_t[b, j, i] = e_{b, i|j} = sum_s Q[s, b, i] S[s, b, j]``.

    ``q`` ``[T, B, N_out]`` (:func:`adjoint_trace`), ``pre`` ``[T, B, N_in]`` 0/1 spikes or their
    :class:`InputEvents`; returns ``[B, N_in, N_out]``. Event-driven: for every input spike
    ``(s, b, j)`` the row ``Q[s, b]`` is added to ``e_t[b, j]`` (``embedding_bag``,
    ``nnz(S) * N_out`` additions). Spike tensors denser than ``max_density`` (default
    ``MAX_SPARSE_DENSITY``) use a batched GEMM instead.
    """
    T, B, n_out = q.shape
    if not isinstance(pre, InputEvents):
        max_density = MAX_SPARSE_DENSITY if max_density is None else max_density
        spikes = as_uint8(pre)
        if int(torch.count_nonzero(spikes)) > max_density * spikes.numel():
            return torch.bmm(spikes.permute(1, 2, 0).to(q.dtype), q.transpose(0, 1))
        pre = InputEvents.from_spikes(spikes)
    n_in = pre.shape[-1]
    bag = pre.b * n_in + pre.j
    offsets = torch.zeros(B * n_in, dtype=bag.dtype, device=q.device)
    offsets[1:] = torch.bincount(bag, minlength=B * n_in)[:-1].cumsum(0)
    out = F.embedding_bag(pre.s * B + pre.b, q.reshape(T * B, n_out), offsets, mode="sum")
    return out.view(B, n_in, n_out)
