"""Cost of the input checks (``check_inputs``) of ``SpikingNetwork`` and ``SpikeCountLoss``.

    python benchmarks/bench_input_checks.py --batch 64 --T 400

784-800-10 with the official MNIST options, MNIST-like Bernoulli inputs at p = 0.03 (uint8). For
each setting, one warm-up and then ``--repeats`` alternating timings of a forward pass (no_grad) and
of a training step (forward, loss, backward), with the checks on and off. Prints one JSON line: the
median seconds of each and the checks' share of the step (``(on - off) / off``), plus the cost of
the checks alone (``SpikingNetwork.check_input`` and ``SpikeCountLoss.check`` on the same batch).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from hm2bp import SpikeCountLoss, SpikingNetwork


def build(check: bool) -> tuple[SpikingNetwork, SpikeCountLoss]:
    torch.manual_seed(0)
    net = SpikingNetwork("784-800-10", thresholds=[20, 8], output_lateral_inhibition=1.0, spsp="official",
                         target_injection=35, reg_lambda=10, reg_beta=0.04, check_inputs=check)
    return net, SpikeCountLoss(35, 5, 5, check_inputs=check)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--T", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(args.T, args.batch, 784, generator=g) < 0.03).to(torch.uint8)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    models = {check: build(check) for check in (True, False)}

    def forward(check):
        with torch.no_grad():
            models[check][0](x)

    def step(check):
        net, loss = models[check]
        net.zero_grad(set_to_none=True)
        loss(net(x, target=y).sum(0), y).backward()

    times = {(kind, check): [] for kind in ("forward", "step") for check in (True, False)}
    for fn, kind in ((forward, "forward"), (step, "step")):
        for check in (True, False):
            fn(check)  # warm-up
        for _ in range(args.repeats):
            for check in (True, False):
                t0 = time.perf_counter()
                fn(check)
                times[(kind, check)].append(time.perf_counter() - t0)
    net, loss = models[True]
    counts = torch.rand(args.batch, 10) * 30
    checks = []
    for _ in range(max(args.repeats, 20)):
        t0 = time.perf_counter()
        net.check_input(x, y)
        loss.check(counts, y)
        checks.append(time.perf_counter() - t0)
    med = {f"{k}_{'on' if c else 'off'}_s": statistics.median(v) for (k, c), v in times.items()}
    out = {"batch": args.batch, "T": args.T, **{k: round(v, 4) for k, v in med.items()},
           "checks_alone_s": round(statistics.median(checks), 5)}
    for kind in ("forward", "step"):
        out[f"{kind}_overhead"] = round((med[f"{kind}_on_s"] - med[f"{kind}_off_s"]) / med[f"{kind}_off_s"], 4)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
