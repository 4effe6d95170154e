"""Time and peak memory of one training step vs the forward pass alone (784-800-10), one config per process.

    python benchmarks/bench_mlp.py --batch 64 --T 400 --mode train   # HM2-BP (default rule)
    python benchmarks/bench_mlp.py --batch 64 --T 400 --mode forward
    python benchmarks/bench_mlp.py --batch 64 --T 400 --mode train --rule bptt      # hm2bp.baselines
    python benchmarks/bench_mlp.py --batch 64 --T 400 --mode train --rule snntorch  # needs snntorch
    python benchmarks/bench_mlp.py --batch 64 --T 400 --mode train --data-dir /path/to/data \
        --weights runs/mnist_mlp/<run>/checkpoints/last.ckpt   # a trained network on MNIST trains

Input: MNIST-like Bernoulli spikes at p = 0.03 with random labels, or, with ``--data-dir`` (a folder
holding ``MNIST/raw``), the first ``--batch`` MNIST training images rate-coded as the datamodule does
(p = x / (5.5 * 255)) with their labels. ``--weights`` takes a run's checkpoint (``hm2bp.load``: the
network and loss it was trained with) instead of a fresh network; a learned network leaves most
samples without output error, and those drop out of the HM2-BP backward (``error_samples`` in the
output line counts the others). Rules:

* ``hm2bp``: ``hm2bp.SpikingNetwork`` with the official MNIST options (lateral inhibition 1, target
  injection 35, regulariser 10/0.04); ``--mode forward`` is the LIF simulation alone (no_grad).
* ``bptt``: ``hm2bp.baselines.BPTTNetwork``, the same neurons and forward dynamics (same spikes for
  the same weights) trained by surrogate-gradient BPTT.
* ``snntorch``: the same 784-800-10 shape in snnTorch's tutorial style (``nn.Linear`` per step +
  ``snn.Synaptic``, two-state LIF with zero reset; no refractory period, no lateral inhibition),
  trained by BPTT through snnTorch's fast-sigmoid surrogate.

On ``--device cuda`` the memory compared is the CUDA allocator's peak above its level after
model and data creation (``cuda_peak_above_baseline_mib``, also stored as
``peak_above_baseline_mib``); host RSS is still reported.

Every rule trains with ``SpikeCountLoss`` on the output counts and Adam. Prints one JSON line:
median and best (min) seconds per step over ``--repeats`` after one warm-up, the process's peak
RSS, and ``peak_above_baseline_mib`` = peak RSS during the timed steps minus the RSS measured after
imports, model and data creation (Linux: the high-water mark is reset there through
``/proc/self/clear_refs``; elsewhere the lifetime ``ru_maxrss`` is used).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from hm2bp import SpikeCountLoss, SpikingNetwork
from hm2bp.allocator import keep_freed_memory


def add_allocator_option(ap: argparse.ArgumentParser) -> None:
    """``--allocator keep|system`` of the benchmark scripts (``keep``: as the hm2bp CLI does)."""
    ap.add_argument("--allocator", choices=["keep", "system"], default="keep",
                    help="keep: hm2bp.allocator.keep_freed_memory(), as the hm2bp CLI does by default")


def apply_allocator_option(args: argparse.Namespace) -> None:
    if args.allocator == "keep":
        keep_freed_memory()


def _rss_kib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _snntorch_net(spec: str, thresholds: list[float], tau_m: float = 64.0, tau_s: float = 8.0):
    import snntorch as snn
    from torch import nn

    sizes = [int(s) for s in spec.split("-")]

    class SnnTorchMLP(nn.Module):
        """Per-step nn.Linear + snn.Synaptic (syn <- a syn + I; mem <- b mem + syn), BPTT."""

        def __init__(self):
            super().__init__()
            self.fcs = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:]))
            for fc in self.fcs:
                nn.init.uniform_(fc.weight, -1.0, 1.0)
            # mem integrates syn (not syn/tau_s as in hm2bp): scale the threshold to keep similar rates
            self.lifs = nn.ModuleList(
                snn.Synaptic(alpha=1 - 1 / tau_s, beta=1 - 1 / tau_m, threshold=thr * tau_s, reset_mechanism="zero")
                for thr in thresholds
            )
            self.num_inputs, self.num_classes = sizes[0], sizes[-1]

        def forward(self, x, target=None):
            states = [lif.init_synaptic() for lif in self.lifs]
            out = []
            for x_t in x.to(self.fcs[0].weight.dtype).unbind(0):
                h = x_t
                for k, (fc, lif) in enumerate(zip(self.fcs, self.lifs)):
                    syn, mem = states[k]
                    h, syn, mem = lif(fc(h), syn, mem)
                    states[k] = (syn, mem)
                out.append(h)
            return torch.stack(out)

    return SnnTorchMLP()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--T", type=int, default=400)
    ap.add_argument("--mode", choices=["train", "forward"], default="train")
    ap.add_argument("--rule", choices=["hm2bp", "bptt", "snntorch"], default="hm2bp")
    ap.add_argument("--spec", default="784-800-10")
    ap.add_argument("--thresholds", default="20,8")
    ap.add_argument("--spsp", default="official")
    ap.add_argument("--surrogate-slope", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backward-threads", type=int, default=None,
                    help="intra-op threads during loss.backward() only (default: --threads)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--density", type=float, default=0.03)
    ap.add_argument("--data-dir", default=None, help="folder with MNIST/raw: real images and labels as input")
    ap.add_argument("--weights", default=None, help="a trained run's .ckpt (hm2bp rule): its network and loss")
    add_allocator_option(ap)
    args = ap.parse_args()
    if args.weights and args.rule != "hm2bp":
        ap.error("--weights needs --rule hm2bp")
    torch.set_num_threads(args.threads)
    apply_allocator_option(args)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    loss_fn = SpikeCountLoss()
    if args.weights:
        import hm2bp

        model = hm2bp.load(args.weights, map_location="cpu")
        net, loss_fn = model.network.train(), model.loss
    elif args.rule == "hm2bp":
        net = SpikingNetwork(args.spec, thresholds, output_lateral_inhibition=1.0,
                             spsp=args.spsp, target_injection=35, reg_lambda=10, reg_beta=0.04)
    elif args.rule == "bptt":
        from hm2bp.baselines import BPTTNetwork

        net = BPTTNetwork(args.spec, thresholds, output_lateral_inhibition=1.0, surrogate_slope=args.surrogate_slope)
    else:
        net = _snntorch_net(args.spec, thresholds)
    net = net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    if args.data_dir:
        from bench_cnn import _images

        from hm2bp.datamodules.encoding import bernoulli_rate

        images, y = _images(args.data_dir, args.batch)
        x = bernoulli_rate(images.flatten(1), args.T, index=torch.arange(args.batch)).to(dev)
        y = y.to(dev)
    else:
        x = (torch.rand(args.T, args.batch, net.num_inputs, device=dev) < args.density).to(torch.uint8)
        x[0] = 0
        y = torch.randint(0, net.num_classes, (args.batch,), device=dev)
    times = []
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base_kib = _rss_kib("VmRSS")
    peak_reset = _reset_peak()
    cuda_base = 0
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_base = torch.cuda.memory_allocated()
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
            loss = loss_fn(out.sum(0), y)
            if args.backward_threads is not None:
                torch.set_num_threads(args.backward_threads)
            loss.backward()
            torch.set_num_threads(args.threads)
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        out = out.detach()
    counts = out.sum(0).to(torch.float64).requires_grad_()
    loss_fn(counts, y).backward()  # dE/do of the last step: zero rows are the samples without error
    error_samples = int(counts.grad.ne(0).any(1).sum())
    peak_kib = _rss_kib("VmHWM") if peak_reset else None
    if peak_kib is None:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = {
        "rule": args.rule, "mode": args.mode, "batch": args.batch, "T": args.T, "spec": args.spec,
        "device": args.device, "threads": args.threads, "allocator": args.allocator, "backward_threads": args.backward_threads or args.threads,
        "s_per_step_median": round(statistics.median(times[1:]), 4), "s_per_step_min": round(min(times[1:]), 4),
        "s_per_step_all": [round(t, 4) for t in times],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_mib": round(rss0, 1),
        "baseline_rss_mib": round(base_kib / 1024, 1) if base_kib is not None else None,
        "peak_above_baseline_mib": round((peak_kib - (base_kib or 0)) / 1024, 1),
        "peak_reset": peak_reset,
        "out_spikes_per_sample": round(float(out.sum()) / args.batch, 1),
        "input": "mnist" if args.data_dir else f"random p={args.density}",
        "weights": args.weights or "initial",
        "error_samples": error_samples,
    }
    if dev.type == "cuda":
        res["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        res["cuda_peak_above_baseline_mib"] = round((torch.cuda.max_memory_allocated() - cuda_base) / 2**20, 1)
        res["peak_above_baseline_mib"] = res["cuda_peak_above_baseline_mib"]  # what the tables compare
    print(json.dumps(res))


if __name__ == "__main__":
    main()
