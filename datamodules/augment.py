r"""On-device image augmentation of the official spiking-CNN runs (docs/algorithm.md, "Input encoding").

Every training presentation gets an elastic distortion plus a random scale and rotation, as the
CUDA-CNN code the official program builds on does (config ``DISTORTION 3.4``, ``SCALE 12``,
``ROTATION 12``). Per sample, with uniforms :math:`u \in [-1, 1]`:

.. math::

    d(p) &= \alpha\,(G_\sigma * u)(p) \quad\text{(per axis; } G_\sigma(r) = e^{-r^2/2\sigma^2}/(2\pi\sigma),
        \ 21\times 21,\ \sigma = 4,\ \alpha = 3.4)\\
    \mathrm{src}(p) &= c + R_\theta^\top\,(p - c) - s \odot (p - c) - d(p),\qquad
        s = \tfrac{\text{scale}}{100} u_s,\ \theta = \text{rotation}\cdot u_\theta\ \text{(degrees)}

and the output pixel is the bilinear sample of the input at :math:`\mathrm{src}(p)` (0 outside).
Implemented with ``affine_grid`` (scale and rotation) plus the smoothed displacement field, then
one ``grid_sample``. Differences from the CUDA code, all immaterial to its purpose: the centre
is the true image centre ((H-1)/2, not H/2), the horizontal and vertical scale factors and the
angle are three independent draws, and border samples use zero padding.

Randomness is the counter-based hash of ``encoding.py`` keyed by ``(seed, sample index, epoch)``:
the distortion of a sample is the same on any device, worker count or rank, and after a resume.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from hm2bp.datamodules.encoding import sample_keys, uniform_hash

_FIELD_SALT = 0x0A06_E1A5  # decorrelates the displacement noise from the spike draws
_PARAM_SALT = 0x05CA_1E0F  # ... and the per-sample scale / rotation draws


def gaussian_field_kernel(sigma: float = 4.0, size: int = 21, dtype: torch.dtype = torch.float32,
                          device=None) -> Tensor:
    """``[size, size]`` smoothing kernel ``exp(-r^2 / 2 sigma^2) / (2 pi sigma)`` (CUDA-CNN's scaling)."""
    if size % 2 == 0:
        raise ValueError(f"the displacement-field kernel size must be odd, got {size}")
    r = torch.arange(size, dtype=dtype, device=device) - size // 2
    r2 = r[:, None] ** 2 + r[None, :] ** 2
    return torch.exp(-r2 / (2 * sigma**2)) / (2 * math.pi * sigma)


def random_distortion(
    images: Tensor,
    *,
    index: Tensor,
    epoch: int = 0,
    seed: int = 0,
    elastic: float = 3.4,
    scale: float = 12.0,
    rotation: float = 12.0,
    sigma: float = 4.0,
    field_size: int = 21,
) -> Tensor:
    """Elastically distort, scale and rotate images ``[B, H, W]`` (or ``[B, C, H, W]``).

    Args:
        images: pixel intensities (uint8 0..255 or float); the output has the same dtype
            (uint8 is rounded and clamped).
        index: ``[B]`` dataset indices of the samples (the randomness key, with ``epoch`` and ``seed``).
        elastic: displacement scaling :math:`\\alpha` in pixels (official 3.4; 0 turns it off).
        scale: maximal scale change in percent, per axis (official 12).
        rotation: maximal rotation in degrees (official 12).
        sigma, field_size: Gaussian smoothing of the displacement noise (CUDA-CNN: 4, 21).
    """
    squeeze = images.dim() == 3
    x = images.unsqueeze(1) if squeeze else images  # [B, C, H, W]
    B, _, H, W = x.shape
    device = x.device
    xf = x.to(torch.float32)
    index = index.to(device)
    params = uniform_hash(sample_keys(seed ^ _PARAM_SALT, index, epoch), 3, 1)[0] * 2 - 1  # [B, 3] in [-1, 1)
    s_x, s_y = scale / 100.0 * params[:, 0], scale / 100.0 * params[:, 1]
    angle = torch.deg2rad(rotation * params[:, 2])
    cos, sin = torch.cos(angle), torch.sin(angle)
    # normalised (x = column, y = row) source coordinates of the affine part
    theta = torch.stack([
        torch.stack([cos - s_x, sin * (H - 1) / max(W - 1, 1), torch.zeros_like(cos)], -1),
        torch.stack([-sin * (W - 1) / max(H - 1, 1), cos - s_y, torch.zeros_like(cos)], -1),
    ], 1)  # [B, 2, 3]
    grid = F.affine_grid(theta, [B, 1, H, W], align_corners=True)  # [B, H, W, 2]
    if elastic > 0:
        noise = uniform_hash(sample_keys(seed ^ _FIELD_SALT, index, epoch), H * W, 2) * 2 - 1  # [2, B, H*W]
        kernel = gaussian_field_kernel(sigma, field_size, torch.float32, device)[None, None]
        disp = F.conv2d(noise.reshape(2 * B, 1, H, W), kernel, padding=field_size // 2)  # zero outside
        disp = elastic * disp.view(2, B, H, W)  # (horizontal, vertical) pixels
        half = torch.tensor([max(W - 1, 1) / 2, max(H - 1, 1) / 2], device=device)
        grid = grid - disp.permute(1, 2, 3, 0) / half  # [B, H, W, 2]
    out = F.grid_sample(xf, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    if not images.is_floating_point():
        out = out.round().clamp(0, 255) if images.dtype == torch.uint8 else out.round()
    out = out.to(images.dtype)
    return out.squeeze(1) if squeeze else out
