"""Time and peak memory of one HM2-BP training step vs the forward pass alone (784-800-10).

    python benchmarks/bench_mlp.py --batch 64 --T 400 --mode train   # one configuration per process
    python benchmarks/bench_mlp.py --batch 64 --T 400 --mode forward

Input: MNIST-like Bernoulli spikes at p = 0.03 (or real MNIST with --mnist <data_dir>). Prints
median-of-N seconds per step and the process's peak RSS (and CUDA peak memory on GPU).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from hm2bp import SpikeCountLoss, SpikingNetwork


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--T", type=int, default=400)
    ap.add_argument("--mode", choices=["train", "forward"], default="train")
    ap.add_argument("--spec", default="784-800-10")
    ap.add_argument("--thresholds", default="20,8")
    ap.add_argument("--spsp", default="official")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--density", type=float, default=0.03)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    net = SpikingNetwork(args.spec, [float(t) for t in args.thresholds.split(",")], output_lateral_inhibition=1.0,
                         spsp=args.spsp, target_injection=35, reg_lambda=10, reg_beta=0.04).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = SpikeCountLoss()
    x = (torch.rand(args.T, args.batch, net.num_inputs, device=dev) < args.density).to(torch.uint8)
    x[0] = 0
    y = torch.randint(0, net.num_classes, (args.batch,), device=dev)
    times = []
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for _ in range(args.repeats + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if args.mode == "forward":
            with torch.no_grad():
                out = net(x)
        else:
            opt.zero_grad(set_to_none=True)
            out = net(x, target=y)
            loss_fn(out.sum(0), y).backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    res = {
        "mode": args.mode, "batch": args.batch, "T": args.T, "spec": args.spec, "device": args.device,
        "s_per_step_median": round(statistics.median(times[1:]), 4), "s_per_step_min": round(min(times[1:]), 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_mib": round(rss0, 1),
        "out_spikes_per_sample": round(float(out.sum()) / args.batch, 1),
    }
    if dev.type == "cuda":
        res["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
