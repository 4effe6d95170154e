"""Run sequential scans single-threaded on CPU.

A time scan issues thousands of tiny element-wise ops; splitting each over several OpenMP
threads costs more in synchronisation than it saves, and on a loaded machine it is
catastrophic (measured here: 400-step LIF scan, batch 64 x 800 neurons: 1.5 s with 1 thread vs
19.7 s with 2 threads while other processes competed for the 2 cores).
"""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def single_thread(device: torch.device):
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
