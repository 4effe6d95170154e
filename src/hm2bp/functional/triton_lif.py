r"""The LIF forward scan of :class:`~hm2bp.functional.lif.LIFScan` as one Triton kernel over all the
steps of a block (``docs/algorithm.md``, "Neuron model"; ``scan_backend.py`` picks it).

Per neuron, in the eager path's float32 order (so the spikes are bit-exact):

.. math::

    \epsilon \leftarrow \mathrm{fma}(\epsilon, 1-1/\tau_s, I[t]) \;(+\,W_{lat} s_{t-1}),\qquad
    u \leftarrow \mathrm{fma}(u, 1-1/\tau_m, \epsilon),\qquad
    u \leftarrow 0 \text{ while refractory},\qquad s_t = [u > \tau_s(\nu - \varepsilon_\nu)],

``u = \tau_s v``; with ``T_ref = 0`` ``u`` resets at a spike. PyTorch's ``add(x, y, alpha=a)`` is a
fused multiply-add on the CPU (AVX2) and on CUDA, hence the explicit ``tl.fma``. Instead of the
eager path's rows of past spikes, the refractory clamp keeps a countdown per neuron (``T_ref`` after
a spike, then one less per step): the clamp is on exactly while a spike fell within the last
``T_ref`` steps. With a lateral matrix one program holds one sample's whole layer, since every
neuron reads all of the layer's spikes at ``t - 1``.

Imported only through ``scan_backend`` when Triton is installed.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

BLOCK = 256  # neurons per program without a lateral matrix
MAX_LATERAL = 1024  # largest layer whose lateral matrix one program holds


@triton.jit
def _lif_kernel(cur_ptr, spk_ptr, ep_ptr, u_ptr, cd_ptr, prev_ptr, cnt_ptr, lat_ptr,
                L, n, N, leak_s, leak_m, theta,
                R: tl.constexpr, LATERAL: tl.constexpr, BLOCK_N: tl.constexpr):
    # program (col, row): neurons row * N + col * BLOCK_N + [0, BLOCK_N) of the flattened state [n]
    # (the long axis first: CUDA grids allow 2^31 - 1 programs there, 65535 on the second)
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row = tl.program_id(1)
    mask = cols < N
    offs = row * N + cols
    ep = tl.load(ep_ptr + offs, mask=mask, other=0.0)
    u = tl.load(u_ptr + offs, mask=mask, other=0.0)
    cd = tl.load(cd_ptr + offs, mask=mask, other=0)
    cnt = tl.load(cnt_ptr + offs, mask=mask, other=0.0)
    if LATERAL:
        prev = tl.load(prev_ptr + offs, mask=mask, other=0.0)
        pre = tl.arange(0, BLOCK_N)
        # lat[j, i] = W_lat[i, j]: row j is what a spike of neuron j adds to every neuron i
        lat = tl.load(lat_ptr + pre[:, None] * N + cols[None, :], mask=(pre[:, None] < N) & mask[None, :], other=0.0)
    cur_row, spk_row = cur_ptr + offs, spk_ptr + offs  # advanced a row per step (no 32-bit k * n)
    for _ in range(0, L):
        x = tl.load(cur_row, mask=mask, other=0.0)
        ep = tl.fma(ep, leak_s, x)
        if LATERAL:
            ep = ep + tl.sum(prev[:, None] * lat, axis=0)
        u = tl.fma(u, leak_m, ep)
        if R > 0:
            u = tl.where(cd > 0, 0.0, u)
            s = u > theta
            cd = tl.where(s, R, tl.maximum(cd - 1, 0))
        else:
            s = u > theta
            u = tl.where(s, 0.0, u)
        sf = s.to(tl.float32)
        tl.store(spk_row, s.to(tl.uint8), mask=mask)
        cur_row += n
        spk_row += n
        cnt += sf
        if LATERAL:
            prev = sf
    tl.store(ep_ptr + offs, ep, mask=mask)
    tl.store(u_ptr + offs, u, mask=mask)
    tl.store(cd_ptr + offs, cd, mask=mask)
    tl.store(cnt_ptr + offs, cnt, mask=mask)
    if LATERAL:
        tl.store(prev_ptr + offs, prev, mask=mask)


def lif_steps(current: Tensor, spikes: Tensor, ep: Tensor, u: Tensor, countdown: Tensor, prev: Tensor,
              counts: Tensor, lateral_t: Tensor | None, *, leak_s: float, leak_m: float, theta: float,
              refractory: int) -> None:
    """Advance the LIF state over ``current`` ``[L, n]`` (float32, contiguous) in one launch.

    ``spikes`` ``[L, n]`` uint8 receives the trains; the state ``[n]`` is updated in place: ``ep``,
    ``u`` (``tau_s v``), ``countdown`` (int32, steps of clamp left), ``prev`` (float spikes of the
    last step, read only with a lateral matrix) and ``counts``. ``lateral_t`` ``[N, N]`` is
    ``W_lat^T`` (contiguous), with ``n = B N``; ``None`` without lateral inhibition.
    """
    L, n = current.shape
    if lateral_t is not None:
        N = lateral_t.shape[0]
        grid, block = (1, n // N), triton.next_power_of_2(N)
        lat = lateral_t
    else:
        N, block = n, BLOCK
        grid, lat = (triton.cdiv(n, BLOCK), 1), counts  # lat unused: any float32 pointer
    _lif_kernel[grid](current, spikes, ep, u, countdown, prev, counts, lat, L, n, N, leak_s, leak_m, theta,
                      R=refractory, LATERAL=lateral_t is not None, BLOCK_N=block)


def fits_lateral(n_neurons: int) -> bool:
    """Whether a layer of ``n_neurons`` with a lateral matrix runs fused (one program per sample)."""
    return n_neurons <= MAX_LATERAL


def empty_state(shape: torch.Size, device: torch.device) -> tuple[Tensor, Tensor]:
    """The fused scan's extra state ``(countdown int32, prev float32)`` of zeros."""
    return (torch.zeros(shape, dtype=torch.int32, device=device),
            torch.zeros(shape, dtype=torch.float32, device=device))
