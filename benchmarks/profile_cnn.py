"""Where the paper CNN's HM2-BP step goes, layer by layer (forward of each layer, backward of each layer).

    python benchmarks/profile_cnn.py 1 16      # threads, batch (T = 400, MNIST images from ../shared-style data dir)
    python benchmarks/profile_cnn.py 1 16 runs/mnist_cnn/<run>/checkpoints/last.ckpt   # weights of a training run
    python benchmarks/profile_cnn.py 1 16 /path/to/checkPoint_cnn_best.txt   # the authors' trained weights

Runs two training steps (the second is reported): forward hooks time each layer's forward; a hook
on each layer's output counts marks when its ``dE/do`` arrives in the backward, so the time
between two marks is the backward of the layer after it (``bwd until <layer> grad arrives``: the
layers above <layer> since the previous mark), and ``rest`` is the first conv layer's backward.
``--data-dir`` defaults to ``$HM2BP_TEST_DATA`` (MNIST/raw), else synthetic images.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cnn import SPEC, THRESHOLDS, _images  # noqa: E402

from hm2bp import SpikeCountLoss, SpikingNetwork  # noqa: E402
from hm2bp.datamodules.encoding import bernoulli_rate  # noqa: E402
from hm2bp.official import is_official_checkpoint, load_checkpoint  # noqa: E402


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    B = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    torch.manual_seed(0)
    net = SpikingNetwork(SPEC, THRESHOLDS, output_lateral_inhibition=1.0, spsp="official", target_injection=35)
    if len(sys.argv) > 3 and is_official_checkpoint(sys.argv[3]):  # the authors' weights (hm2bp.official)
        load_checkpoint(net, sys.argv[3])
    elif len(sys.argv) > 3:  # a Lightning checkpoint of hm2bp fit: its network weights (trained layers spike more)
        state = torch.load(sys.argv[3], map_location="cpu", weights_only=True)["state_dict"]
        net.load_state_dict({k[len("network."):]: v for k, v in state.items() if k.startswith("network.")})
    images, y = _images(os.environ.get("HM2BP_TEST_DATA"), B)
    x = bernoulli_rate(images, 400, index=torch.arange(B))
    times: dict[str, float] = {}

    def hooks(name):
        def pre(mod, args, kwargs):
            times[name + "_f0"] = time.perf_counter()

        def post(mod, args, kwargs, out):
            times[name + "_f"] = time.perf_counter() - times[name + "_f0"]
            counts = out[1]
            if counts.requires_grad:
                counts.register_hook(lambda g: times.__setitem__(name + "_b0", time.perf_counter()))

        return pre, post

    for name, layer in net.layers.items():
        a, b = hooks(name)
        layer.register_forward_pre_hook(a, with_kwargs=True)
        layer.register_forward_hook(b, with_kwargs=True)
    for _ in range(2):
        t0 = time.perf_counter()
        outs = net(x, target=y, return_all=True)
        t1 = time.perf_counter()
        SpikeCountLoss()(outs["output"].sum(0), y).backward()
        t2 = time.perf_counter()
    print(f"threads {torch.get_num_threads()} batch {B} load {os.getloadavg()[0]:.2f}")
    print("fwd %.3f bwd %.3f" % (t1 - t0, t2 - t1))
    names = list(net.layers)
    for n in names:
        spikes = int(outs[n].detach().to(torch.float64).sum())
        print(n, "fwd %.3f" % times[n + "_f"], "spikes", spikes, "density %.5f" % (spikes / outs[n][0].numel() / 400))
    prev = t1
    for n in reversed(names):
        t = times.get(n + "_b0")
        if t:
            print("bwd until", n, "grad arrives: %.3f" % (t - prev))
            prev = t
    print("rest %.3f" % (t2 - prev))


if __name__ == "__main__":
    main()
