"""The fused Triton scans against the eager ones on a device: checks first, then the MLP train step.

    python benchmarks/fused_scans.py --device cuda --T 400 --batch 64

1. Checks (``scan_backend="triton"`` against ``"eager"``, same inputs): the LIF forward of an 800-neuron
   layer and of a 10-neuron layer with output inhibition (w0 = 1) give identical spikes and counts; the
   adjoint and PSP traces of those trains agree within 1e-5 of their largest value
   (``tests/functional/test_triton_scans.py`` says why); one train step of the official 784-800-10
   network gives identical output spikes and weight gradients within 1e-4 of their largest value.
2. Timing: the train step of ``profile_cuda.py`` (official MNIST options, Bernoulli p = 0.03 input,
   Adam) with each backend: median wall time of ``--repeats`` steps after ``--warmup``, and the
   number of kernels one step launches (``torch.profiler``).

Prints one JSON line per part; exits 1 when a check fails. ``--device cpu`` runs the kernels in
Triton's interpreter (``TRITON_INTERPRET=1``): a smoke test of the script with small ``--T``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch


def _max_rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max().clamp(min=1e-30))


def _mlp(backend: str = "auto"):
    """The official MNIST MLP of ``profile_cuda.py`` with the given scan backend."""
    from hm2bp import SpikingNetwork

    return SpikingNetwork("784-800-10", [20.0, 8.0], output_lateral_inhibition=1.0, spsp="official",
                          target_injection=35, reg_lambda=10, reg_beta=0.04, scan_backend=backend)


def checks(dev: torch.device, T: int, B: int) -> dict:
    from hm2bp import SpikeCountLoss
    from hm2bp.functional import LIFParams, lif_simulate, psp_traces
    from hm2bp.functional.spsp import adjoint_trace

    g = torch.Generator(device=dev).manual_seed(0)
    out: dict = {}
    ok = True
    for name, n, lateral, thr in (("hidden", 800, None, 20.0), ("output", 10, -(1 - torch.eye(10, device=dev)), 8.0)):
        cur = torch.rand(T, B, n, device=dev, generator=g) * 6.0
        eager = LIFParams(thr, psp="official", scan_backend="eager")
        fused = LIFParams(thr, psp="official", scan_backend="triton")
        s0, s1 = lif_simulate(cur, eager, lateral=lateral), lif_simulate(cur, fused, lateral=lateral, block=T)
        same = bool(torch.equal(s0, s1))
        q0, q1 = adjoint_trace(s0, eager.psp_kernel).clone(), adjoint_trace(s0, fused.psp_kernel)
        (a0, b0), (a1, b1) = psp_traces(s0, eager.psp_kernel), psp_traces(s0, fused.psp_kernel)
        rel = max(_max_rel(q1, q0), _max_rel(a1, a0), _max_rel(b1, b0))
        out[name] = {"spikes": int(s0.sum()), "spikes_equal": same, "trace_max_rel": rel}
        ok &= same and rel <= 1e-5
    torch.manual_seed(0)
    state = _mlp().state_dict()
    x = (torch.rand(T, B, 784, device=dev, generator=g) < 0.03).to(torch.uint8)
    y = torch.randint(0, 10, (B,), device=dev, generator=g)
    results = {}
    for backend in ("eager", "triton"):
        net = _mlp(backend)
        net.load_state_dict(state)
        net.to(dev)
        o = net(x, target=y)
        SpikeCountLoss()(o.sum(0), y).backward()
        results[backend] = (o.detach(), [p.grad.detach().clone() for p in net.parameters()])
    (o0, g0), (o1, g1) = results["eager"], results["triton"]
    grad_rel = max(_max_rel(b, a) for a, b in zip(g0, g1))
    out["step"] = {"output_equal": bool(torch.equal(o0, o1)), "grad_max_rel": grad_rel}
    ok &= out["step"]["output_equal"] and grad_rel <= 1e-4
    out["ok"] = bool(ok)
    return out


def timing(dev: torch.device, T: int, B: int, warmup: int, repeats: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from hm2bp import SpikeCountLoss

    torch.manual_seed(0)
    state = _mlp().state_dict()
    x = (torch.rand(T, B, 784, device=dev) < 0.03).to(torch.uint8)
    y = torch.randint(0, 10, (B,), device=dev)
    out = {"device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
           "T": T, "batch": B}
    for backend in ("eager", "triton"):
        net = _mlp(backend)
        net.load_state_dict(state)
        net.to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        loss_fn = SpikeCountLoss()

        def step(net=net, opt=opt, loss_fn=loss_fn) -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x, target=y).sum(0), y).backward()
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        for _ in range(warmup):
            step()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        kernels = None
        if dev.type == "cuda":
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                step()
            kernels = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
        out[backend] = {"step_ms_median": round(1e3 * statistics.median(times), 2),
                        "step_ms_min": round(1e3 * min(times), 2), "kernels": kernels}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--T", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--no-timing", action="store_true", help="the checks only")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is first imported
    from hm2bp.functional.scan_backend import triton_importable

    if not triton_importable():
        print(json.dumps({"skipped": "triton is not importable: no fused scans to check or time"}))
        return
    result = checks(dev, args.T, args.batch)
    print(json.dumps({"checks": result}), flush=True)
    if not args.no_timing:
        print(json.dumps({"timing": timing(dev, args.T, args.batch, args.warmup, args.repeats)}), flush=True)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
