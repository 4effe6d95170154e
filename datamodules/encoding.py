r"""Spike encoders shared by the datamodules (spec §4).

``bernoulli_rate``: the paper's rate code for static images (spec §4.1). For pixel intensity
:math:`x \in [0, 255]` and every step :math:`t = 1 \dots T-1` (never :math:`t = 0`), a spike with
probability :math:`p = x / (5.5 \cdot 255)`.

Randomness is a counter-based hash of ``(seed, sample index, epoch, t, pixel)``, so the train of
sample ``i`` in epoch ``e`` is the same on any device, in any worker, on any rank and after a
resume, and nothing has to be stored (60k frozen MNIST trains at T=400 would take 18.8 GB).
"""
from __future__ import annotations

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF


def _mix32(x: Tensor) -> Tensor:
    """A 32-bit integer finaliser on int64 tensors holding values in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x5BD1E995) & _M32
    x = x ^ (x >> 16)
    return x


def sample_keys(seed: int, index: Tensor, epoch: int | Tensor) -> Tensor:
    """Per-sample 32-bit keys ``[B]`` from ``(seed, index, epoch)``."""
    index = index.to(torch.int64)
    k = _mix32((torch.as_tensor(seed, dtype=torch.int64, device=index.device) & _M32) ^ 0x243F6A88)
    k = _mix32(k ^ (index & _M32))
    k = _mix32(k ^ (torch.as_tensor(epoch, dtype=torch.int64, device=index.device) * 0x3C6EF372 & _M32))
    return k


def uniform_hash(keys: Tensor, n: int, time_steps: int) -> Tensor:
    """Uniforms in [0, 1) of shape ``[T, B, n]`` from per-sample keys ``[B]``."""
    pos = torch.arange(time_steps * n, device=keys.device, dtype=torch.int64).view(time_steps, 1, n)
    x = _mix32(pos ^ keys.view(1, -1, 1))
    x = _mix32(x ^ (keys.view(1, -1, 1) * 0x61C88647 & _M32))
    return x.to(torch.float32) * (1.0 / 4294967296.0)


def bernoulli_rate(
    images: Tensor,
    time_steps: int,
    *,
    index: Tensor,
    epoch: int = 0,
    seed: int = 0,
    rate_divisor: float = 5.5,
    max_value: float = 255.0,
) -> Tensor:
    """Rate-code images ``[B, *shape]`` (0..max_value) into spikes ``[T, B, *shape]`` (uint8).

    ``p = x / (rate_divisor * max_value)`` per step; no spike at ``t = 0`` (spec §4.1).
    """
    B = images.shape[0]
    shape = images.shape[1:]
    n = int(torch.tensor(shape).prod()) if len(shape) else 1
    p = images.reshape(B, n).to(torch.float32) / (rate_divisor * max_value)  # [B, n]
    u = uniform_hash(sample_keys(seed, index, epoch), n, time_steps)  # [T, B, n]
    spikes = (u < p.unsqueeze(0)).to(torch.uint8)
    spikes[0] = 0
    return spikes.view(time_steps, B, *shape)
