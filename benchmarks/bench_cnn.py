"""Time and peak memory of one training step of the paper CNN vs its forward pass alone, one config per process.

    python benchmarks/bench_cnn.py --mode forward --batch 64 --T 400            # HM2-BP forward (LIF simulation)
    python benchmarks/bench_cnn.py --mode train --batch 64 --T 400              # HM2-BP step
    python benchmarks/bench_cnn.py --mode train --batch 64 --T 400 --rule bptt  # hm2bp.baselines BPTT CNN
    python benchmarks/bench_cnn.py --mode train --batch 64 --T 400 --rule snntorch
    python benchmarks/bench_cnn.py --mode train --batch 16 --T 400 --threads 1 --data-dir /path/to/data \
        --weights /path/to/checkPoint_cnn_best.txt   # trained weights (the authors' file or a run's .ckpt)

Network: 28x28-15C5-P2-40C5-P2-300-10, thresholds 5/2/12/4/10/10, official conventions (the
``configs/experiment/mnist_cnn.yaml`` model: lateral inhibition 1, target injection 35). Rules:

* ``hm2bp``: ``hm2bp.SpikingNetwork`` (event-driven conv/pool, HM2-BP backward);
* ``bptt``: ``hm2bp.baselines.BPTTNetwork`` on the same spec: the same neurons and spikes for the
  same weights, trained by surrogate-gradient BPTT;
* ``snntorch``: the same shape in snnTorch's tutorial style (``nn.Conv2d``/window sum/``nn.Linear``
  per step + ``snn.Synaptic``, zero reset, no refractory period, no lateral inhibition), BPTT.

Input: real MNIST training images rate-coded as in the datamodule (``--data-dir`` holding
``MNIST/raw``), or, without it, random blobs at the same density. Prints one JSON line with the
keys of ``bench_mlp.py``: median and best seconds per step over ``--repeats`` (after one warm-up),
per-layer spike counts, the samples of the last step whose output error is not zero
(``error_samples``: the others drop out of the backward, ``hm2bp.functional.live``), peak RSS, and ``peak_above_baseline_mib`` (the highest peak RSS of the steps,
each step's high-water mark reset before it and read right after it, minus the RSS after imports,
model and data creation; on CUDA the allocator's peak above its baseline instead).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mlp import _reset_peak, _rss_kib, add_allocator_option, apply_allocator_option  # noqa: E402

from hm2bp import SpikeCountLoss, SpikingNetwork  # noqa: E402
from hm2bp.datamodules.encoding import bernoulli_rate  # noqa: E402
from hm2bp.functional.rule import spike_counts  # noqa: E402

SPEC = "28x28-15C5-P2-40C5-P2-300-10"
THRESHOLDS = [5, 2, 12, 4, 10, 10]


def _images(data_dir: str | None, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    if data_dir:
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


def load_weights(net: torch.nn.Module, path: str) -> None:
    """Trained weights into ``net``: the authors' checkpoint file (``hm2bp.official``) or a Lightning
    checkpoint of ``hm2bp fit`` (its ``network.*`` entries)."""
    from hm2bp.official import is_official_checkpoint, load_checkpoint

    if is_official_checkpoint(path):
        load_checkpoint(net, path)
        return
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    net.load_state_dict({k[len("network."):]: v for k, v in state.items() if k.startswith("network.")})


def _snntorch_cnn(tau_m: float = 64.0, tau_s: float = 8.0):
    import snntorch as snn
    import torch.nn.functional as F
    from torch import nn

    class SnnTorchCNN(nn.Module):
        """Per step: conv/window-sum/linear + snn.Synaptic for each of the six layers, BPTT."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 15, 5, bias=False)
            self.conv2 = nn.Conv2d(15, 40, 5, bias=False)
            self.fc1 = nn.Linear(640, 300, bias=False)
            self.out = nn.Linear(300, 10, bias=False)
            for m in (self.conv1, self.conv2):
                nn.init.uniform_(m.weight, -0.5, 0.5)
            for m in (self.fc1, self.out):
                nn.init.uniform_(m.weight, -1.0, 1.0)
            # mem integrates syn (not syn/tau_s as in hm2bp): thresholds scaled by tau_s
            self.lifs = nn.ModuleList(
                snn.Synaptic(alpha=1 - 1 / tau_s, beta=1 - 1 / tau_m, threshold=thr * tau_s, reset_mechanism="zero")
                for thr in THRESHOLDS
            )
            self.num_classes = 10

        def forward(self, x, target=None, return_all=False):
            states = [lif.init_synaptic() for lif in self.lifs]
            ops = [self.conv1, lambda h: F.avg_pool2d(h, 2, divisor_override=1), self.conv2,
                   lambda h: F.avg_pool2d(h, 2, divisor_override=1), lambda h: self.fc1(h.flatten(1)), self.out]
            out = []
            for x_t in x.to(self.conv1.weight.dtype).unsqueeze(2).unbind(0):
                h = x_t
                for k, (op, lif) in enumerate(zip(ops, self.lifs)):
                    syn, mem = states[k]
                    h, syn, mem = lif(op(h), syn, mem)
                    states[k] = (syn, mem)
                out.append(h)
            spikes = torch.stack(out)
            return {"output": spikes} if return_all else spikes

    return SnnTorchCNN()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["train", "forward"], default="train")
    ap.add_argument("--rule", choices=["hm2bp", "bptt", "snntorch"], default="hm2bp")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--T", type=int, default=400)
    ap.add_argument("--spsp", default="official")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=None, help="folder with MNIST/raw (default: synthetic images)")
    ap.add_argument("--conv-budget-mib", type=float, default=None,
                    help="memory budget of the conv/pool backward's sample blocks (default: the layers' 128 MiB)")
    ap.add_argument("--weights", default=None,
                    help="trained weights (hm2bp rule): the authors' checkPoint_cnn_best.txt or a run's .ckpt; "
                         "default: the initial U(-0.5, 0.5) / U(-1, 1) weights")
    add_allocator_option(ap)
    args = ap.parse_args()
    if args.weights and args.rule != "hm2bp":
        ap.error("--weights needs --rule hm2bp")
    torch.set_num_threads(args.threads)
    apply_allocator_option(args)
    torch.manual_seed(0)
    torch.backends.cudnn.allow_tf32 = False  # full fp32: TF32 rounds conv/matmul inputs and can flip spikes
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if args.rule == "hm2bp":
        net = SpikingNetwork(SPEC, THRESHOLDS, output_lateral_inhibition=1.0, spsp=args.spsp, target_injection=35)
    elif args.rule == "bptt":
        from hm2bp.baselines import BPTTNetwork

        net = BPTTNetwork(SPEC, THRESHOLDS, output_lateral_inhibition=1.0)
    else:
        net = _snntorch_cnn()
    if args.weights:
        load_weights(net, args.weights)
    if args.conv_budget_mib is not None:
        for layer in net.modules():
            if hasattr(layer, "memory_budget"):
                layer.memory_budget = int(args.conv_budget_mib * 2**20)
    net = net.to(device=dev, dtype=dtype)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = SpikeCountLoss()
    images, y = _images(args.data_dir, args.batch)
    x = bernoulli_rate(images.to(dev), args.T, index=torch.arange(args.batch, device=dev))  # [T, B, 28, 28]
    y = y.to(dev)
    times, counts = [], {}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base_kib = _rss_kib("VmRSS")
    peak_reset = _reset_peak()
    cuda_base = 0
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_base = torch.cuda.memory_allocated()
    peaks = []  # VmHWM after each step, reset before it (the spike counting below stays out of it)
    for _ in range(args.repeats + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if peak_reset:
            _reset_peak()
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
        peaks.append(_rss_kib("VmHWM") if peak_reset else None)
        # count in chunks of steps: .sum() of a bool train would first copy it to int64 (8 bytes a neuron-step)
        counts = {k: int(spike_counts(v.detach(), torch.float64).sum()) for k, v in outs.items()}
        out_counts = spike_counts(outs["output"].detach(), torch.float64).requires_grad_()
        loss_fn(out_counts, y).backward()  # dE/do: zero rows are the samples without error
        error_samples = int(out_counts.grad.ne(0).any(1).sum())
        del outs
    peak_kib = max(p for p in peaks if p is not None) if peak_reset and peaks else None
    if peak_kib is None:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "rule": args.rule, "mode": args.mode, "batch": args.batch, "T": args.T, "dtype": args.dtype,
        "device": str(dev), "threads": args.threads, "allocator": args.allocator, "input": "mnist" if args.data_dir else "synthetic",
        "conv_budget_mib": args.conv_budget_mib,
        "s_per_step_median": round(statistics.median(times[1:]), 4), "s_per_step_min": round(min(times[1:]), 4),
        "s_per_step_all": [round(t, 4) for t in times],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_mib": round(rss0, 1),
        "baseline_rss_mib": round(base_kib / 1024, 1) if base_kib is not None else None,
        "peak_above_baseline_mib": round((peak_kib - (base_kib or 0)) / 1024, 1),
        "peak_reset": peak_reset,
        "spikes_per_layer": counts,
        "weights": args.weights or "initial",
        "error_samples": error_samples,
    }
    if dev.type == "cuda":
        result["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        result["cuda_peak_above_baseline_mib"] = round((torch.cuda.max_memory_allocated() - cuda_base) / 2**20, 1)
        result["peak_above_baseline_mib"] = result["cuda_peak_above_baseline_mib"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
