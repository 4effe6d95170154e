r"""PSP traces of spike trains and the two S-PSP conventions
(``docs/algorithm.md``, "Neuron model", "Spike-train-level PSP").

Both conventions write the never-reset unit PSP of one input spike as a difference of two
geometric traces,

.. math::

    P_j[t] = C\,\big(A^{(a)}_j[t] - A^{(b)}_j[t]\big),\qquad
    A^{(x)}_j[t] = \sum_{k:\ t^{(k)}_j + \Delta \le t} x^{\,t - t^{(k)}_j - \Delta},\qquad
    C = \frac{\tau_m}{\tau_m - \tau_s}.

* ``exact``: :math:`a = 1 - 1/\tau_m`, :math:`b = 1 - 1/\tau_s`, :math:`\Delta = 0`.
  This is exactly the membrane response of the simulator ("Neuron model") to a unit-weight spike
  (0.125 at lag 1, 0.232422 at lag 2, ...), first reset at :math:`r_1 = 0`, no window.
* ``official`` (the authors' program): the continuous kernel :math:`\varepsilon_0(t) = C(e^{-t/\tau_m} - e^{-t/\tau_s})`,
  i.e. :math:`a = e^{-1/\tau_m}`, :math:`b = e^{-1/\tau_s}`, pre spikes shifted by
  :math:`\Delta = T_{ref}`, first reset at :math:`r_1 = 1`, and only pre spikes with
  :math:`1 \le t_{pre}`, :math:`t_{post} - 4\tau_m \le t_{pre} < t_{post}` counted.
* ``paper`` (the paper's formula): the continuous kernel without shift, window or the first-reset offset.

The constants of each convention are a :class:`~hm2bp.functional.params.PSPKernel` record, built
from a layer's neuron record (``LIFParams.psp_kernel``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from hm2bp.functional.params import PSPKernel
from hm2bp.functional.scan_backend import use_triton


def exp_trace(spikes: Tensor, decay: float, shift: int = 0, dtype: torch.dtype | None = None) -> Tensor:
    r"""Geometric trace :math:`A[t] = \sum_{t_k + \Delta \le t} x^{t - t_k - \Delta}`.

    Args:
        spikes: ``[T, ...]`` spike trains (bool, uint8 or float).
        decay: per-step factor :math:`x`.
        shift: :math:`\Delta`, steps by which every spike is delayed.
    Returns:
        ``[T, ...]`` trace in ``dtype`` (default float32, or the input's float dtype).
    """
    if dtype is None:
        dtype = spikes.dtype if spikes.is_floating_point() else torch.float32
    T = spikes.shape[0]
    out = torch.zeros(spikes.shape, dtype=dtype, device=spikes.device)
    if shift >= T:
        return out
    src = spikes[: T - shift].to(dtype)  # spike at t lands at t + shift
    out[shift] = src[0]
    for t in range(shift + 1, T):
        torch.add(src[t - shift], out[t - 1], alpha=decay, out=out[t])
    return out


def psp_traces(pre: Tensor, kernel: PSPKernel, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """The two traces ``(A_a, A_b)`` of ``pre`` ``[T, ...]``; the free PSP is ``C (A_a - A_b)``.

    Under ``official``, input spikes at ``t < min_pre_time`` are dropped first. Under the Triton
    backend (``kernel.scan_backend``) both traces are one fused kernel (``triton_traces.psp_scan``).
    """
    if dtype is None:
        dtype = pre.dtype if pre.is_floating_point() else torch.float32
    probe = torch.empty(0, dtype=dtype, device=pre.device)
    if pre.shape[0] > 0 and use_triton(kernel.scan_backend, probe):
        from hm2bp.functional.triton_traces import psp_scan

        src = (pre.view(torch.uint8) if pre.dtype == torch.bool else pre).reshape(pre.shape[0], -1).contiguous()
        out_a = torch.empty(pre.shape, dtype=dtype, device=pre.device)
        out_b = torch.empty_like(out_a)
        psp_scan(src, out_a.view(src.shape), out_b.view(src.shape), decay_a=kernel.decay_m, decay_b=kernel.decay_s,
                 shift=kernel.shift, min_pre_time=kernel.min_pre_time)
        return out_a, out_b
    if kernel.min_pre_time > 0:
        pre = pre.clone()
        pre[: kernel.min_pre_time] = 0
    return (
        exp_trace(pre, kernel.decay_m, kernel.shift, dtype),
        exp_trace(pre, kernel.decay_s, kernel.shift, dtype),
    )


def free_psp(pre: Tensor, kernel: PSPKernel, dtype: torch.dtype | None = None) -> Tensor:
    """Never-reset unit PSP ``P = C (A_a - A_b)`` of every input, ``[T, ...]``."""
    a, b = psp_traces(pre, kernel, dtype)
    return kernel.scale * (a - b)
