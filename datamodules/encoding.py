r"""Spike encoders shared by the datamodules (docs/algorithm.md, "Input encoding").

``bernoulli_rate``: the paper's rate code for static images. For pixel intensity
:math:`x \in [0, 255]` and every step :math:`t = 1 \dots T-1` (never :math:`t = 0`), a spike with
probability :math:`p = x / (5.5 \cdot 255)`.

Randomness: every sample gets its own generator, seeded with a 32-bit hash of
``(seed, sample index, epoch)``. The train of sample ``i`` in epoch ``e`` is therefore the same in
any worker, on any rank, in any batch and after a resume, and nothing has to be stored (60k frozen
MNIST trains at T=400 would take 18.8 GB). A batch of 64 MNIST images at T=400 encodes in
0.07 s on 2 CPU cores (an element-wise integer hash of every (t, pixel) took 2.7 s).
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


def counter_uniforms(counters: Tensor, salt: int) -> Tensor:
    """Uniforms in [0, 1) (float32), one per int64 counter in [0, 2^32), decorrelated by ``salt``."""
    x = _mix32((counters.to(torch.int64) & _M32) ^ (salt & _M32))
    return _mix32(x ^ 0x61C88647).to(torch.float32) * (1.0 / 4294967296.0)


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

    ``p = x / (rate_divisor * max_value)`` per step; no spike at ``t = 0`` (docs/algorithm.md,
    "Input encoding"). Each sample's uniforms come from its own generator seeded with
    ``sample_keys(seed, index, epoch)``, so a sample's train does not depend on the batch it is in,
    the worker, the rank or a resume (on one device type: CPU and CUDA generators give different
    streams).
    """
    B = images.shape[0]
    shape = images.shape[1:]
    n = int(torch.tensor(shape).prod()) if len(shape) else 1
    device = images.device
    p = images.reshape(B, n).to(torch.float32) / (rate_divisor * max_value)  # [B, n]
    keys = sample_keys(seed, index.cpu(), epoch).tolist()
    spikes = torch.empty(time_steps, B, n, dtype=torch.uint8, device=device)
    u = torch.empty(time_steps, n, dtype=torch.float32, device=device)
    gen = torch.Generator(device=device)
    for b, key in enumerate(keys):
        gen.manual_seed(int(key))
        torch.rand(time_steps, n, generator=gen, out=u)
        torch.lt(u, p[b], out=spikes[:, b])
    spikes[0] = 0
    return spikes.view(time_steps, B, *shape)


def compact_nonzero(images: Tensor) -> Tensor:
    r"""Each image's nonzero pixels, packed to the front: the input layout of an early authors' reader.

    ``images`` ``[B, *shape]`` -> the same shape, where sample ``b``'s nonzero pixels keep their
    raster order but occupy the first positions ``0 .. K_b - 1`` and the rest are 0. Input neuron
    :math:`k` then carries the :math:`k`-th nonzero pixel of the image, not pixel :math:`k`.

    The authors' spiking-MNIST reader did this until upstream commit f24ac6c (2018-01-12), which
    moved ``index++`` ahead of the zero-pixel skip in ``generatePoissonSpikes``. Their MNIST log was
    committed on 2018-04-23, three months later, so this is not the published behaviour; hm2bp's
    default, ``raster``, is. Use it only to reproduce a run of the authors' program from before that
    fix, or the ablation row in ``docs/results.md`` (``docs/algorithm.md``, "Input layout"). Fully
    connected networks only.
    """
    B = images.shape[0]
    flat = images.reshape(B, -1)
    order = torch.sort((flat == 0).to(torch.uint8), dim=1, stable=True).indices
    return flat.gather(1, order).view_as(images)


PIXEL_ORDERS = ("raster", "compact")
