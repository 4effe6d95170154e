"""Readers for the official program's golden files (shared/data/hm2bp-golden/README.md formats)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def read_spike_list(path: Path, n_neurons: int, T: int) -> torch.Tensor:
    """Sparse ``neuron time`` list framed by ``-1 -1`` lines -> ``[T, n_neurons]`` uint8 (t >= T dropped)."""
    out = torch.zeros(T, n_neurons, dtype=torch.uint8)
    lines = Path(path).read_text().split("\n")
    started = False
    for line in lines:
        parts = line.split()
        if len(parts) < 2:
            continue
        n, t = int(parts[0]), int(parts[1])
        if n == -1 and t == -1:
            if started:
                break
            started = True
            continue
        if t < T:
            out[t, n] = 1
    return out


def read_dense_dump(path: Path, channels: int, T: int, dim: int) -> torch.Tensor:
    """Dense 0/1 dump ordered (channel, t, row*dim + col) -> ``[T, channels, dim, dim]`` uint8."""
    vals = np.array(Path(path).read_text().split(), dtype=np.int64)
    assert vals.size == channels * T * dim * dim, f"{path}: {vals.size} values"
    arr = (vals.reshape(channels, T, dim, dim) >= 1).astype(np.uint8)
    return torch.from_numpy(arr).permute(1, 0, 2, 3).contiguous()


def read_fc_weights(path: Path, n_post: int, n_pre: int) -> torch.Tensor:
    """``id pre_name post_name w`` lines -> ``W[post, pre]`` float64 (duplicates summed, bias lines skipped)."""
    w = torch.zeros(n_post, n_pre, dtype=torch.float64)
    for line in Path(path).read_text().split("\n"):
        parts = line.split()
        if len(parts) != 4:
            continue
        pre = int(parts[1].rsplit("_", 1)[1])
        post = int(parts[2].rsplit("_", 1)[1])
        if pre == n_pre:
            continue  # bias
        w[post, pre] += float(parts[3])
    return w


def read_conv_kernels(path: Path, out_ch: int, in_ch: int, k: int) -> torch.Tensor:
    """Float list ordered (out, in, row, col) -> ``[out, in, k, k]`` float64."""
    vals = np.array(Path(path).read_text().split(), dtype=np.float64)
    assert vals.size == out_ch * in_ch * k * k, f"{path}: {vals.size} values"
    return torch.from_numpy(vals.reshape(out_ch, in_ch, k, k))
