"""Probe: the LIF scan fused by ``torch.compile`` (CPU inductor) against the eager ``LIFScan``.

    python benchmarks/lif_compile_probe.py --neurons 138240 --T 400    # conv1 of the paper CNN at batch 16

Compiles one block of ``--block`` steps of the LIF dynamics (docs/algorithm.md, "Neuron model";
the same scaled update as ``hm2bp.functional.lif.LIFScan``, refractory period 2) into one kernel
and runs ``T`` steps of a random current through both. Prints one JSON line: compile seconds
(first call), seconds for ``T`` steps each way (best of ``--repeats``), and whether the spike
trains are identical. Needs a C++ compiler (inductor); without one it reports the error. Not used
by the package: the eager scan stays the default until a fused scan is shown bit-exact on the
golden tests.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from hm2bp.functional import LIFParams
from hm2bp.functional.lif import LIFScan


def block_fn(block: int):
    def step_block(cur, ep, u, recent, prev, leak_s: float, leak_m: float, theta: float):
        outs = []
        for k in range(block):
            ep = cur[k] + ep * leak_s
            u = ep + u * leak_m
            u = u - u * recent
            s = (u > theta).to(u.dtype)
            recent = s + prev
            prev = s
            outs.append(s)
        return torch.stack(outs), ep, u, recent, prev

    return step_block


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", type=int, default=138240)
    ap.add_argument("--T", type=int, default=400)
    ap.add_argument("--block", type=int, default=16)
    ap.add_argument("--threshold", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n, L, T = args.neurons, args.block, args.T // args.block * args.block
    cur = torch.rand(T, n, generator=torch.Generator().manual_seed(0)) * 0.6
    cur[0] = 0
    leak_s, leak_m, theta = 1 - 1 / 8, 1 - 1 / 64, args.threshold * 8  # u = tau_s v, official tau 64/8
    res = {"neurons": n, "T": T, "block": L, "threads": args.threads}

    def eager():
        spikes = torch.zeros(T, n, dtype=torch.bool)
        scan = LIFScan(spikes, LIFParams(args.threshold, threshold_eps=0.0))
        for t0 in range(0, T, L):
            scan.run(t0, cur[t0 : t0 + L])
        return spikes

    try:
        fn = torch.compile(block_fn(L), dynamic=False)
        t0 = time.perf_counter()
        state = [torch.zeros(n) for _ in range(4)]
        fn(cur[:L], *state, leak_s, leak_m, theta)
        res["compile_s"] = round(time.perf_counter() - t0, 1)

        def fused():
            ep, u, recent, prev = (torch.zeros(n) for _ in range(4))
            rows = []
            for t0 in range(0, T, L):
                s, ep, u, recent, prev = fn(cur[t0 : t0 + L], ep, u, recent, prev, leak_s, leak_m, theta)
                rows.append(s)
            out = torch.cat(rows).bool()
            out[0] = False  # no spike at t = 0 (the eager scan skips it)
            return out
    except Exception as exc:  # noqa: BLE001 - a missing toolchain must not break the probe
        res["compile_error"] = repr(exc)[:300]
        fused = None
    best = {}
    for name, f in (("eager", eager), ("compiled", fused)):
        if f is None:
            continue
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = f()
            times.append(time.perf_counter() - t0)
        best[name] = out
        res[f"{name}_s"] = round(min(times), 3)
    if "compiled" in best:
        res["identical_spikes"] = bool(torch.equal(best["eager"], best["compiled"]))
        res["spikes"] = int(best["eager"].sum())
    print(json.dumps(res))


if __name__ == "__main__":
    main()
