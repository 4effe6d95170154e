"""Time every backward path of the paper CNN's conv layers on the same inputs, and show what
``path="auto"`` picks (``choose_path``).

    python benchmarks/conv_paths.py                                  # initial weights
    python benchmarks/conv_paths.py runs/mnist_cnn/<run>/checkpoints/last.ckpt   # a run's weights
    python benchmarks/conv_paths.py --device cuda                    # on a GPU

One training step (batch ``--batch``, T = 400, MNIST images from ``--data-dir`` / ``$HM2BP_TEST_DATA``,
else synthetic) records the arguments of each conv layer's event backward; each path then runs on
exactly those arguments ``--repeats`` times (best reported) and its weight gradient is compared with
the output path's. Prints one JSON record per layer.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cnn import SPEC, THRESHOLDS, _images  # noqa: E402
from bench_mlp import add_allocator_option, apply_allocator_option  # noqa: E402

import hm2bp.layers.conv as conv_layer  # noqa: E402
from hm2bp import SpikeCountLoss, SpikingNetwork  # noqa: E402
from hm2bp.datamodules.encoding import bernoulli_rate  # noqa: E402
from hm2bp.functional.conv_grad import choose_path, conv_hm2bp_backward_events  # noqa: E402

PATHS = ("output", "input", "gemm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", help="a Lightning checkpoint of hm2bp fit (its network weights)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--T", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=os.environ.get("HM2BP_TEST_DATA"))
    parser.add_argument("--device", default="cpu")
    add_allocator_option(parser)
    args = parser.parse_args()
    apply_allocator_option(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = SpikingNetwork(SPEC, THRESHOLDS, output_lateral_inhibition=1.0, spsp="official", target_injection=35)
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        net.load_state_dict({k[len("network."):]: v for k, v in state.items() if k.startswith("network.")})
    device = torch.device(args.device)
    net = net.to(device)
    images, labels = _images(args.data_dir, args.batch)
    x = bernoulli_rate(images, args.T, index=torch.arange(args.batch)).to(device)
    labels = labels.to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    calls = []

    def record(*a, **kw):
        calls.append((a, kw))
        return conv_hm2bp_backward_events(*a, **kw)

    conv_layer.conv_hm2bp_backward_events = record  # the layer's backward looks the name up at call time
    try:
        outs = net(x, target=labels, return_all=True)
        SpikeCountLoss()(outs["output"].sum(0), labels).backward()
    finally:
        conv_layer.conv_hm2bp_backward_events = conv_hm2bp_backward_events
    with torch.no_grad():
        for number, (a, kw) in enumerate(reversed(calls), start=1):  # the backward runs top-down
            pre_events, post_index, geom, neuron, rule = a[0], a[1], a[2], a[5], a[6]
            want_h = kw["need_input_grad"] and rule.effect_ratio
            record_ = {"layer": f"conv{number}", "device": str(device), "batch": args.batch, "T": args.T,
                       "threads": args.threads,
                       "weights": args.checkpoint or "initial", "input_spikes": pre_events.s.numel(),
                       "output_spikes": post_index.numel(),
                       "auto": choose_path(pre_events.s.numel(), post_index.numel(), args.T, args.batch, geom,
                                           neuron.psp_kernel.window is not None, want_h)}
            reference = None
            for path in PATHS:
                times = []
                for _ in range(args.repeats):
                    sync()
                    t0 = time.perf_counter()
                    grad_w = conv_hm2bp_backward_events(*a, **dict(kw, path=path))[0]
                    sync()
                    times.append(time.perf_counter() - t0)
                if reference is None:
                    reference = grad_w
                record_[f"{path}_s"] = round(min(times), 4)
                record_[f"{path}_max_rel_diff"] = float((grad_w - reference).abs().max() / reference.abs().max())
            print(json.dumps(record_), flush=True)


if __name__ == "__main__":
    main()
