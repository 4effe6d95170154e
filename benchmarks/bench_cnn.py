"""Time and peak memory of one HM2-BP training step of the paper CNN vs its forward pass alone.

    python benchmarks/bench_cnn.py --mode forward --batch 16 --T 400   # one configuration per process
    python benchmarks/bench_cnn.py --mode train --batch 16 --T 400

Network: 28x28-15C5-P2-40C5-P2-300-10, thresholds 5/2/12/4/10/10, official conventions (the
``configs/experiment/mnist_cnn.yaml`` model). Input: real MNIST training images rate-coded as in
the datamodule (``--data-dir`` holding ``MNIST/raw``), or, without it, random blobs at the same
density. Prints the median seconds per step over ``--repeats`` (after one warm-up), per-layer
spike counts, and the process's peak RSS (plus the CUDA peak on GPU) as one JSON line.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from hm2bp import SpikeCountLoss, SpikingNetwork
from hm2bp.datamodules.encoding import bernoulli_rate

SPEC = "28x28-15C5-P2-40C5-P2-300-10"
THRESHOLDS = [5, 2, 12, 4, 10, 10]


def _images(data_dir: str | None, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    if data_dir:
        from pathlib import Path

        import numpy as np

        from hm2bp.datamodules.idx import read_idx
        from hm2bp.datamodules.mnist import find_idx

        raw = Path(data_dir) / "MNIST" / "raw"
        x = read_idx(find_idx(raw, "train-images-idx3-ubyte"), expected_ndim=3)[:batch]
        y = read_idx(find_idx(raw, "train-labels-idx1-ubyte"), expected_ndim=1)[:batch]
        return torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y, dtype=np.int64))
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(batch, 28, 28, dtype=torch.uint8)
    x[:, 6:22, 10:18] = (torch.rand(batch, 16, 8, generator=g) * 255).to(torch.uint8)
    return x, torch.randint(0, 10, (batch,), generator=g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["train", "forward"], default="train")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--T", type=int, default=400)
    ap.add_argument("--spsp", default="official")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=None, help="folder with MNIST/raw (default: synthetic images)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch.backends.cudnn.allow_tf32 = False  # exact fp32 accumulation (golden-parity.md §3)
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    net = SpikingNetwork(SPEC, THRESHOLDS, output_lateral_inhibition=1.0, spsp=args.spsp, target_injection=35)
    net = net.to(device=dev, dtype=dtype)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = SpikeCountLoss()
    images, y = _images(args.data_dir, args.batch)
    x = bernoulli_rate(images.to(dev), args.T, index=torch.arange(args.batch, device=dev))  # [T, B, 28, 28]
    y = y.to(dev)
    times, counts = [], {}
    for _ in range(args.repeats + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if args.mode == "forward":
            with torch.no_grad():
                outs = net(x, return_all=True)
        else:
            opt.zero_grad(set_to_none=True)
            outs = net(x, target=y, return_all=True)
            loss_fn(outs["output"].sum(0), y).backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        counts = {k: int(v.detach().sum()) for k, v in outs.items()}
        del outs
    result = {
        "mode": args.mode, "batch": args.batch, "T": args.T, "dtype": args.dtype, "device": str(dev),
        "threads": args.threads, "input": "mnist" if args.data_dir else "synthetic",
        "sec_per_step_median": round(statistics.median(times[1:]), 3),
        "sec_per_step_all": [round(t, 3) for t in times],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "spikes_per_layer": counts,
    }
    if dev.type == "cuda":
        result["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
