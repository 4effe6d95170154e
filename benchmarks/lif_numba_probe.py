"""Probe: a fused numba kernel of the LIF block scan against ATen's ``LIFScan``, by measurement.

    python benchmarks/lif_numba_probe.py [--T 400] [--shape 16 24 24 15] [--threads 1]

The kernel steps neurons in tiles through a block with the same fused multiply-adds as ATen's
``add(alpha=...)`` (``llvm.fma`` through a numba intrinsic) and a per-neuron refractory countdown.
It prints, per dtype and refractory period, whether spikes, counts and state equal the ATen scan's
bit for bit, and both times. Not used by the package (``docs/benchmarks.md``, "Fused scans").
"""
from __future__ import annotations

import argparse
import time
from functools import lru_cache

import torch

from hm2bp.functional.lif import LIFScan
from hm2bp.functional.params import LIFParams

TILE = 256  # neurons stepped together through a block (their state and current rows stay in L1/L2)


@lru_cache(maxsize=1)
def load():
    """The compiled kernel ``lif_block(current, ep, u, ref, counts, out, leak_s, leak_m, theta,
    refractory)``, or ``None`` when numba is unavailable.

    ``current`` ``[L, N]`` float (C-contiguous), ``ep``/``u``/``counts`` ``[N]`` of the same dtype,
    ``ref`` ``[N]`` int32 countdown, ``out`` ``[L, N]`` bool; all updated in place.
    """
    try:
        import numpy as np
        from numba import njit
        from numba.extending import intrinsic
    except Exception:  # noqa: BLE001 - any import failure means "use the ATen scan"
        return None

    @intrinsic
    def fma(typingctx, a, b, c):
        """One rounding of ``a * b + c`` (LLVM ``llvm.fma``), as ATen's vectorised ``fmadd``."""
        if not (a == b == c):
            return None

        def codegen(context, builder, signature, args):
            return builder.fma(*args)

        return a(a, b, c), codegen

    @njit(cache=True, nogil=True, boundscheck=False)
    def lif_block(current, ep, u, ref, counts, out, leak_s, leak_m, theta, refractory):
        L, N = current.shape
        ls = current.dtype.type(leak_s)
        lm = current.dtype.type(leak_m)
        th = current.dtype.type(theta)
        zero = current.dtype.type(0.0)
        one = current.dtype.type(1.0)
        R = current.dtype.type(refractory)
        for n0 in range(0, N, TILE):  # branch-free inner loop over a tile: LLVM vectorises it
            n1 = min(n0 + TILE, N)
            for k in range(L):
                row = current[k]
                spikes = out[k]
                for n in range(n0, n1):
                    e = fma(ls, ep[n], row[n])
                    v = fma(lm, u[n], e)
                    r = ref[n]
                    v = zero if r > 0 else v  # refractory clamp (never true with T_ref = 0)
                    s = v > th
                    ep[n] = e
                    sf = one if s else zero
                    ref[n] = R if s else max(r - one, zero)
                    counts[n] += sf
                    u[n] = zero if (s and R == zero) else v  # T_ref = 0: reset at the spike
                    spikes[n] = np.uint8(1) if s else np.uint8(0)
        return None

    try:  # compile for both dtypes now, so a failure shows here and not mid-training
        for dt in (np.float32, np.float64):
            z = np.zeros(1, dt)
            lif_block(np.zeros((1, 1), dt), z.copy(), z.copy(), z.copy(), z.copy(),
                      np.zeros((1, 1), np.uint8), 0.5, 0.5, 1.0, 2)
    except Exception:  # noqa: BLE001 - a numba that cannot compile here: use the ATen scan
        return None
    return lif_block


def fused_scan(current: torch.Tensor, neuron: LIFParams, block: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Bool spikes ``[T, N]`` and counts of ``current`` ``[T, N]`` through the numba kernel."""
    kernel = load()
    T, N = current.shape
    dt = current.dtype
    ep, u, ref, counts = (torch.zeros(N, dtype=dt) for _ in range(4))
    out = torch.zeros(T, N, dtype=torch.bool)
    theta = (neuron.threshold - neuron.threshold_eps) * neuron.tau_s
    for t0 in range(1, T, block):  # t = 0: no spike
        t1 = min(t0 + block, T)
        kernel(current[t0:t1].contiguous().numpy(), ep.numpy(), u.numpy(), ref.numpy(), counts.numpy(),
               out[t0:t1].view(torch.uint8).numpy(), 1 - 1 / neuron.tau_s, 1 - 1 / neuron.tau_m, theta,
               neuron.refractory)
    return out, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=400)
    ap.add_argument("--shape", type=int, nargs="+", default=[16, 24, 24, 15], help="neurons (conv1 at batch 16)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if load() is None:
        raise SystemExit("numba is not importable here")
    torch.manual_seed(0)
    N = 1
    for d in args.shape:
        N *= d
    for dtype in (torch.float32, torch.float64):
        for R in (2, 0):
            cur = (torch.rand(args.T, N) < 0.3).to(dtype) * torch.randn(args.T, N, dtype=dtype) * 3
            neuron = LIFParams(5.0, refractory=R)
            out = torch.zeros(args.T, N, dtype=torch.bool)
            scan = LIFScan(out, neuron, dtype=dtype)
            t = time.perf_counter()
            for t0 in range(0, args.T, 16):
                scan.run(t0, cur[t0 : t0 + 16])
            t_aten = time.perf_counter() - t
            t = time.perf_counter()
            fused, counts = fused_scan(cur, neuron)
            t_fused = time.perf_counter() - t
            print(f"{str(dtype):14s} T_ref {R}: identical spikes {torch.equal(out, fused)}, counts "
                  f"{torch.equal(scan.counts, counts)}; ATen {t_aten:.3f} s, numba {t_fused:.3f} s")


if __name__ == "__main__":
    main()
