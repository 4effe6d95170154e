r"""The backward's geometric scans as one Triton kernel each (``docs/algorithm.md``,
"Spike-train-level PSP"; ``scan_backend.py`` picks them).

* :func:`adjoint_scan`: the reverse scans of ``spsp.adjoint_trace``,
  :math:`G[t] = \mathrm{fma}(G[t+1], d, X[t])` for :math:`d = a, b` over the post coefficient
  rasters, and :math:`Q[s] = C\,(G_a - G_b)[s + \Delta]` (zero for ``s < min_pre_time``), written
  over the ``X_a`` raster in place.
* :func:`psp_scan`: the forward traces of ``psp.psp_traces``,
  :math:`A[t] = \mathrm{fma}(A[t-1], d, S[t - \Delta])` for both decays, input rows before
  ``min_pre_time`` dropped.

Each program walks all the steps of ``BLOCK`` neurons, in the eager path's float32 order (PyTorch's
``addcmul`` and ``add(alpha=...)`` are fused multiply-adds on the CPU and on CUDA). Imported only
through ``scan_backend`` when Triton is installed.
"""
from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

BLOCK = 256  # neurons per program


@triton.jit
def _adjoint_kernel(ws_ptr, xb_off, last, rows, n, shift, min_pre, decay_a, decay_b, scale,
                    BLOCK_N: tl.constexpr):
    offs = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = offs < n
    ga = tl.zeros([BLOCK_N], dtype=tl.float32)
    gb = tl.zeros([BLOCK_N], dtype=tl.float32)
    row = ws_ptr + last + offs  # row t = rows - 1, moved back a row per step (no 32-bit t * n)
    for i in range(0, rows):
        t = rows - 1 - i
        xa = tl.load(row, mask=mask, other=0.0)
        xb = tl.load(row + xb_off, mask=mask, other=0.0)
        ga = tl.fma(ga, decay_a, xa)
        gb = tl.fma(gb, decay_b, xb)
        q = (ga - gb) * scale
        q = tl.where(t - shift < min_pre, 0.0, q)
        tl.store(row, q, mask=mask)  # row t was read above by the same program
        row -= n


def adjoint_scan(workspace: Tensor, rows: int, n: int, shared: bool, *, decay_a: float, decay_b: float,
                 scale: float, shift: int, min_pre_time: int) -> Tensor:
    """Run the adjoint scans over the rasters in ``workspace`` (float32): ``X_a`` ``[rows, n]``
    first, ``X_b`` right after it unless ``shared`` (one raster for both). Returns ``Q`` ``[rows -
    shift, n]``, a view of the first ``rows n`` elements (rows ``shift ..``)."""
    xb_off = 0 if shared else rows * n
    _adjoint_kernel[(triton.cdiv(n, BLOCK),)](workspace, xb_off, (rows - 1) * n, rows, n, shift, min_pre_time,
                                              decay_a, decay_b, scale, BLOCK_N=BLOCK)
    return workspace[: rows * n].view(rows, n)[shift:]


@triton.jit
def _psp_kernel(src_ptr, a_ptr, b_ptr, T, n, shift, first, decay_a, decay_b, BLOCK_N: tl.constexpr):
    offs = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = offs < n
    aa = tl.zeros([BLOCK_N], dtype=tl.float32)
    ab = tl.zeros([BLOCK_N], dtype=tl.float32)
    src, out_a, out_b = src_ptr + offs, a_ptr + offs, b_ptr + offs  # a row per step (no 32-bit t * n)
    for t in range(0, T):
        k = t - shift  # the input row that lands at t
        # the step test as a block (offs * 0 + k): a block mask and-ed with a scalar comparison fails
        # in the interpreter ("mask has unsupported dtype")
        live = mask & ((offs * 0 + k) >= first)
        x = tl.load(src, mask=live, other=0).to(tl.float32)
        aa = tl.fma(aa, decay_a, x)
        ab = tl.fma(ab, decay_b, x)
        tl.store(out_a, aa, mask=mask)
        tl.store(out_b, ab, mask=mask)
        out_a += n
        out_b += n
        if k >= 0:
            src += n


def psp_scan(spikes: Tensor, out_a: Tensor, out_b: Tensor, *, decay_a: float, decay_b: float, shift: int,
             min_pre_time: int) -> None:
    """Both PSP traces of ``spikes`` ``[T, n]`` (contiguous; uint8 or float) into ``out_a`` and
    ``out_b`` ``[T, n]`` float32."""
    T, n = spikes.shape
    first = max(min_pre_time, 0)  # first input row that counts
    _psp_kernel[(triton.cdiv(n, BLOCK),)](spikes, out_a, out_b, T, n, shift, first, decay_a, decay_b,
                                          BLOCK_N=BLOCK)
