"""Where one HM2-BP training step of 784-800-10 spends its time on a GPU (or the CPU).

    python benchmarks/profile_cuda.py --device cuda --T 400 --batch 64

Runs ``--warmup`` steps, then one step under ``torch.profiler`` and prints one JSON line: wall
seconds of the step, the number of kernels launched, summed device time, and the ``--top``
operators by self time on the device (CPU time when no GPU). A step whose wall time is much larger
than its summed kernel time is bound by kernel launches (host side), not by the GPU's arithmetic.
Same network and input as ``bench_mlp.py`` (official MNIST options, Bernoulli p = 0.03).
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torch.profiler import ProfilerActivity, profile

from hm2bp import SpikeCountLoss, SpikingNetwork


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--T", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--density", type=float, default=0.03)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    net = SpikingNetwork("784-800-10", [20.0, 8.0], output_lateral_inhibition=1.0, spsp="official",
                         target_injection=35, reg_lambda=10, reg_beta=0.04).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = SpikeCountLoss()
    x = (torch.rand(args.T, args.batch, 784, device=dev) < args.density).to(torch.uint8)
    y = torch.randint(0, 10, (args.batch,), device=dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = net(x, target=y)
        loss_fn(out.sum(0), y).backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        step()
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    on_device = dev.type == "cuda"

    def self_time(e) -> float:
        return float(e.self_device_time_total if on_device else e.self_cpu_time_total)

    kernels = [e for e in prof.events() if on_device and e.device_type == torch.autograd.DeviceType.CUDA]
    top = sorted(events, key=self_time, reverse=True)[: args.top]
    print(json.dumps({
        "device": str(dev), "T": args.T, "batch": args.batch, "wall_s": round(wall, 4),
        "kernels": len(kernels), "kernel_time_s": round(sum(k.device_time for k in kernels) / 1e6, 4),
        "top": [{"op": e.key, "calls": e.count, "self_ms": round(self_time(e) / 1e3, 3)} for e in top],
    }))


if __name__ == "__main__":
    main()
