"""Does the HM2-BP step give the same spikes and gradients on another device as on the CPU?

    python benchmarks/device_check.py --device cuda     # on a GPU machine, before its benchmark
    python benchmarks/device_check.py --device cpu      # smoke run of the script itself
    pytest -m gpu tests/test_device_check.py            # the same check as a test (skipped without CUDA)

Builds a small MLP (100-60-10, official conventions) and a small CNN (12x12-4C3-P2-30-10, once
per conv backward path: output, input, gemm) in float64, copies the same weights to the CPU and
to ``--device``, runs one forward and one HM2-BP backward on the same input spikes, and compares every layer's spike trains (must be identical)
and every gradient (relative error <= ``--rtol``; float summation order differs between devices).
Every layer must spike, so the comparison is not vacuous.
Prints one JSON line and exits non-zero on a mismatch.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys

import torch

from hm2bp import SpikeCountLoss, SpikingNetwork
from hm2bp.layers.conv import SpikingConv2d

CONV_PATHS = ("output", "input", "gemm")


def run(net: SpikingNetwork, x: torch.Tensor, y: torch.Tensor) -> tuple[dict, dict]:
    net.zero_grad(set_to_none=True)
    layers = net(x, target=y, return_all=True)
    SpikeCountLoss(10, 2, 2)(layers["output"].sum(0), y).backward()
    spikes = {k: v.detach().bool().cpu() for k, v in layers.items()}
    grads = {k: p.grad.detach().cpu() for k, p in net.named_parameters() if p.grad is not None}
    return spikes, grads


def compare(name: str, net: SpikingNetwork, x: torch.Tensor, y: torch.Tensor, device: torch.device, rtol: float) -> dict:
    ref_spikes, ref_grads = run(net, x, y)
    other = copy.deepcopy(net).to(device)
    spikes, grads = run(other, x.to(device), y.to(device))
    report = {"net": name, "spikes": {k: int(s.sum()) for k, s in ref_spikes.items()},
              "spike_mismatches": {}, "grad_rel_err": {}}
    for k, s in ref_spikes.items():
        report["spike_mismatches"][k] = int((s != spikes[k]).sum())
    for k, g in ref_grads.items():
        scale = g.abs().max().clamp(min=1e-300)
        report["grad_rel_err"][k] = float((g - grads[k]).abs().max() / scale)
    report["ok"] = all(report["spikes"].values()) and all(v == 0 for v in report["spike_mismatches"].values()) and all(
        v <= rtol for v in report["grad_rel_err"].values()
    )
    return report


def check(device: torch.device, rtol: float = 1e-9, T: int = 120) -> list[dict]:
    """Compare CPU and ``device`` on the small MLP and CNN (module docstring); one report each."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (4,), generator=g)
    torch.manual_seed(0)
    mlp = SpikingNetwork("100-60-10", [3.0, 2.0], output_lateral_inhibition=1.0, spsp="official",
                         target_injection=10, reg_lambda=1.0, reg_beta=0.1).double()
    x_mlp = (torch.rand(T, 4, 100, generator=g) < 0.05).to(torch.uint8)
    torch.manual_seed(1)
    cnn = SpikingNetwork("12x12-4C3-P2-30-10", [1.0, 0.5, 2.0, 2.0], output_lateral_inhibition=1.0,
                         spsp="official").double()
    x_cnn = (torch.rand(T, 4, 12, 12, generator=g) < 0.08).to(torch.uint8)  # < MAX_CONV_DENSITY: event paths
    reports = [compare("mlp 100-60-10", mlp, x_mlp, y, device, rtol)]
    for path in CONV_PATHS:  # every conv backward path, on both devices
        for layer in cnn.modules():
            if isinstance(layer, SpikingConv2d):
                layer.backward_path = path
        reports.append(compare(f"cnn 12x12-4C3-P2-30-10 path={path}", cnn, x_cnn, y, device, rtol))
    return reports


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rtol", type=float, default=1e-9)
    ap.add_argument("--T", type=int, default=120)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"error": "CUDA is not available"}))
        return 2
    reports = check(device, args.rtol, args.T)
    ok = all(r["ok"] for r in reports)
    print(json.dumps({"device": str(device), "torch": torch.__version__, "ok": ok, "reports": reports}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
