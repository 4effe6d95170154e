"""Where one HM2-BP step of 784-800-10 goes: each layer's forward and backward timed alone.

    python benchmarks/profile_step.py --T 400 --batch 64

Prints best-of-``--repeats`` milliseconds for: each layer's forward simulation (and, for the
hidden layer, the event-driven current alone), listing the events the backward needs, and each
layer's HM2-BP backward (``hm2bp_backward`` with the counts, input events and spike indices the
forward saved), as the network chains them.
Same network and input as ``bench_mlp.py`` (official MNIST options, Bernoulli p = 0.03).
"""
from __future__ import annotations

import argparse
import time

import torch

from hm2bp import SpikingNetwork
from hm2bp.functional import LinearForward, hm2bp_backward
from hm2bp.functional.current import synaptic_current
from hm2bp.functional.forward import linear_forward
from hm2bp.functional.spsp import InputEvents, reset_events


def best_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--density", type=float, default=0.03)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = SpikingNetwork("784-800-10", [20, 8], output_lateral_inhibition=1.0, spsp="official",
                         target_injection=35, reg_lambda=10, reg_beta=0.04)
    T, B = args.T, args.batch
    x = (torch.rand(T, B, 784) < args.density).to(torch.uint8)
    x[0] = 0
    y = torch.randint(0, 10, (B,))
    hidden, out = net.layers["fc1"], net.layers["output"]
    rows = {}
    with torch.no_grad():
        h, h_counts, h_events, h_index = linear_forward(x, hidden.weight, None, hidden.neuron, return_events=True)
        o, o_counts, o_events, o_index = linear_forward(h, out.weight, None, out.neuron, lateral=out.lateral,
                                                        return_events=True, input_index=h_index)
        weight_t = hidden.weight.t().contiguous()
        block = hidden.block
        rows["fc1 forward (linear_forward)"] = best_ms(
            lambda: linear_forward(x, hidden.weight, None, hidden.neuron), args.repeats)
        rows["  of which the current alone"] = best_ms(
            lambda: [synaptic_current(x[t : t + block], weight_t) for t in range(0, T - 1, block)], args.repeats)
        rows["output forward (linear_forward)"] = best_ms(
            lambda: linear_forward(h, out.weight, None, out.neuron, lateral=out.lateral, input_index=h_index),
            args.repeats)
        rows["whole network forward"] = best_ms(lambda: net(x), args.repeats)
        rows["input events sorted for fc1 backward"] = best_ms(
            lambda: InputEvents.from_flat(h_events, (T, B, 784)), args.repeats)
        rows["reset events of the hidden trains"] = best_ms(
            lambda: reset_events(h, hidden.psp_kernel, index=h_index), args.repeats)
        g_hidden = torch.randn(B, 800)
        g_out = torch.randn(B, 10)
        x_counts = x.sum(0).float()
        rows["fc1 backward (no input error)"] = best_ms(lambda: hm2bp_backward(
            LinearForward(x, h, counts_in=x_counts, counts_out=h_counts,
                          pre_events=InputEvents.from_flat(h_events, (T, B, 784)), post_index=h_index),
            hidden.weight, g_hidden, hidden.neuron, hidden.rule, need_input_grad=False), args.repeats)
        rows["output backward"] = best_ms(lambda: hm2bp_backward(
            LinearForward(h, o, target=y, counts_in=h_counts, counts_out=o_counts,
                          pre_events=InputEvents.from_flat(o_events, (T, B, 800)), post_index=o_index),
            out.weight, g_out, out.neuron, out.rule), args.repeats)
    print(f"784-800-10, T={T}, batch {B}, p={args.density}, {args.threads} threads: best of {args.repeats}, ms")
    for name, ms in rows.items():
        print(f"{name:40s} {ms:8.1f}")


if __name__ == "__main__":
    main()
