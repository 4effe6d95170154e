"""Random spike trains that respect the official refractory period (float64)."""
from __future__ import annotations

import torch

from hm2bp.functional import LIFParams


def random_post_train(rng, T, rate):
    """Spike times of a train that respects the official refractory period (``rng``: ``random.Random``)."""
    times, t = [], 1
    while True:
        t += 1 + LIFParams.refractory + int(rng.expovariate(rate))
        if t >= T:
            return times
        times.append(t)


def random_trains(rng, T, shape, silent_every=4, rate=(0.05, 0.15)):
    """Valid refractory trains ``[T, *shape]`` (float64), every ``silent_every``-th neuron silent."""
    n = 1
    for s in shape:
        n *= s
    out = torch.zeros(T, n, dtype=torch.float64)
    for j in range(n):
        if silent_every and j % silent_every == 0:
            continue
        for t in random_post_train(rng, T, rng.uniform(*rate)):
            out[t, j] = 1
    return out.view(T, *shape)
