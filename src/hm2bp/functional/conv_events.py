r"""Event-driven input current of spiking convolution and pooling layers
(``docs/algorithm.md``, "Neuron model", "Convolution and pooling").

A conv layer's current is the cross-correlation of the previous step's 0/1 input spikes with the
kernels (stride :math:`s`, zero padding :math:`p`, no flip):

.. math::  I[f, c_o, y, x] = \sum_{(c_i, i_y, i_x) \in \text{events}(f)} W[c_o, c_i,\ i_y + p - y s,\ i_x + p - x s]

(taps outside :math:`[0, k)` contribute nothing). Gathering kernel taps one by one moves rows of
only ``C_out`` floats, which is too little work per gathered row on a CPU. So the unit of work is an
**output line**: for an input spike at :math:`(c_i, i_y, i_x)` and a kernel row :math:`k_y`, the
contribution to output line :math:`y = (i_y + p - k_y)/s` is the *line stamp*

.. math::  L[(c_i, k_y, i_x)][x, c_o] = W[c_o, c_i, k_y, i_x + p - x s]\quad(0 \text{ outside the kernel}),

a row of ``W_out * C_out`` floats, and every output line is the sum of the stamps of its
``(event, k_y)`` entries: one ``embedding_bag`` over the entries sorted by line. That is
``nnz(s) * k * W_out * C_out`` additions instead of the dense ``H_out W_out C_out C_in k^2``
multiply-adds per frame, and it writes the current **channels-last** ``[frames, H_out, W_out, C_out]``.

Pooling neurons (unit weights over non-overlapping :math:`p \times p` windows) get the count of
input spikes in their window: one scatter of ones per input spike.

Events are the flat row-major indices of the non-zero spikes of ``[frames, C, H, W]`` (what
``nonzero`` gives; a frame is one (step, sample) pair).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# Above this input density the dense conv2d is cheaper than the gathered stamps (measured in
# docs/benchmarks.md, "Event-driven convolution").
MAX_CONV_DENSITY = 0.1


@dataclass(frozen=True)
class ConvGeometry:
    """Shapes of one conv layer: input ``(c_in, h, w)``, ``c_out`` kernels of ``k x k``, stride, padding."""

    c_in: int
    h: int
    w: int
    c_out: int
    k: int
    stride: int = 1
    padding: int = 0

    @property
    def h_out(self) -> int:
        return (self.h + 2 * self.padding - self.k) // self.stride + 1

    @property
    def w_out(self) -> int:
        return (self.w + 2 * self.padding - self.k) // self.stride + 1

    @property
    def in_frame(self) -> int:
        return self.c_in * self.h * self.w


def line_stamps(weight: Tensor, geom: ConvGeometry) -> Tensor:
    """The stamp table ``[C_in * k * W, W_out * C_out]``: row ``(c_i, k_y, i_x)`` holds
    ``W[c_o, c_i, k_y, i_x + p - x s]`` at ``(x, c_o)`` (0 where the tap falls outside the kernel)."""
    k, s, p = geom.k, geom.stride, geom.padding
    ix = torch.arange(geom.w, device=weight.device).view(-1, 1)
    x = torch.arange(geom.w_out, device=weight.device).view(1, -1)
    kx = ix + p - x * s  # [W, W_out]
    inside = (kx >= 0) & (kx < k)
    taps = weight.permute(1, 2, 3, 0)[:, :, kx.clamp(0, k - 1)]  # [C_in, k, W, W_out, C_out]
    taps = taps * inside.view(1, 1, geom.w, geom.w_out, 1).to(weight.dtype)
    return taps.reshape(geom.c_in * k * geom.w, geom.w_out * geom.c_out).contiguous()


@dataclass(frozen=True)
class LineEntries:
    """The ``(event, k_y)`` entries of a set of frames, sorted by output line.

    ``line`` is ``frame * H_out + y`` (ascending), ``stamp`` the row of :func:`line_stamps`.
    """

    line: Tensor
    stamp: Tensor

    def bag_offsets(self, first_line: int, n_lines: int) -> Tensor:
        """Start of every line ``first_line .. first_line + n_lines - 1`` in the entries (for ``embedding_bag``)."""
        starts = torch.arange(first_line, first_line + n_lines, dtype=self.line.dtype, device=self.line.device)
        return torch.searchsorted(self.line, starts).to(self.stamp.dtype)

    def slice_lines(self, lo: int, hi: int) -> "LineEntries":
        """Entries of lines ``lo <= line < hi`` (a slice: the entries are sorted)."""
        bounds = torch.tensor([lo, hi], dtype=self.line.dtype, device=self.line.device)
        i0, i1 = torch.searchsorted(self.line, bounds).tolist()
        return LineEntries(self.line[i0:i1], self.stamp[i0:i1])


def line_entries(frame: Tensor, c: Tensor, iy: Tensor, ix: Tensor, geom: ConvGeometry) -> LineEntries:
    """The line entries of input events ``(frame, c, iy, ix)`` (any order; each a 1-D tensor).

    An event feeds output line ``y = (iy + p - k_y)/s`` for every kernel row ``k_y`` where that
    is an integer in ``[0, H_out)``. The entries are sorted by line (stable, so the summation
    order within a line is fixed: deterministic currents).
    """
    k, s, p = geom.k, geom.stride, geom.padding
    itype = torch.int64 if (int(frame.max()) + 1 if frame.numel() else 1) * geom.h_out >= 2**31 else torch.int32
    ky = torch.arange(k, dtype=itype, device=frame.device).view(1, k)
    num = iy.to(itype).view(-1, 1) + p - ky  # [n, k]: s * y
    y = torch.div(num, s, rounding_mode="floor")
    ok = (num >= 0) & (y < geom.h_out)
    if s > 1:
        ok &= num == y * s
    line = (frame.to(itype).view(-1, 1) * geom.h_out + y)[ok]
    stamp = ((c.to(itype).view(-1, 1) * k + ky) * geom.w + ix.to(itype).view(-1, 1))[ok]
    line, order = torch.sort(line, stable=True)
    return LineEntries(line, stamp[order])


def split_events(index: Tensor, frame_size: int, h: int, w: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Flat indices into ``[frames, C, H, W]`` -> ``(frame, c, iy, ix)``."""
    frame = torch.div(index, frame_size, rounding_mode="floor")
    rem = index - frame * frame_size
    c = torch.div(rem, h * w, rounding_mode="floor")
    rem = rem - c * (h * w)
    iy = torch.div(rem, w, rounding_mode="floor")
    return frame, c, iy, rem - iy * w


def gather_conv_current(entries: LineEntries, stamps: Tensor, first_line: int, n_frames: int,
                        geom: ConvGeometry) -> Tensor:
    """Current of ``n_frames`` frames starting at line ``first_line`` (a multiple of ``H_out``),
    channels-last ``[n_frames, H_out, W_out, C_out]``, from the sorted ``entries``."""
    n_lines = n_frames * geom.h_out
    part = entries.slice_lines(first_line, first_line + n_lines)
    offsets = part.bag_offsets(first_line, n_lines)
    out = F.embedding_bag(part.stamp, stamps, offsets, mode="sum")  # [n_lines, W_out * C_out]
    return out.view(n_frames, geom.h_out, geom.w_out, geom.c_out)


def conv_current_events(index: Tensor, n_frames: int, weight: Tensor, geom: ConvGeometry) -> Tensor:
    """``conv2d`` of 0/1 frames ``[n_frames, C_in, H, W]`` given by their spike ``index`` (flat,
    row-major), channels-last ``[n_frames, H_out, W_out, C_out]`` in the weight's dtype."""
    entries = line_entries(*split_events(index, geom.in_frame, geom.h, geom.w), geom)
    return gather_conv_current(entries, line_stamps(weight, geom), 0, n_frames, geom)


def pool_current_events(index: Tensor, n_frames: int, channels: int, h: int, w: int, p: int,
                        dtype: torch.dtype) -> Tensor:
    """Spike count of each ``p x p`` window (stride ``p``) of 0/1 frames ``[n_frames, C, H, W]``
    given by their flat spike ``index``: ``[n_frames, C, H//p, W//p]`` in ``dtype`` (exact)."""
    ho, wo = h // p, w // p
    frame, c, iy, ix = split_events(index, channels * h * w, h, w)
    y, x = torch.div(iy, p, rounding_mode="floor"), torch.div(ix, p, rounding_mode="floor")
    keep = (y < ho) & (x < wo)  # pixels past the last full window feed no pooling neuron
    rows = ((frame * channels + c) * ho + y) * wo + x
    if not bool(keep.all()):
        rows = rows[keep]
    out = torch.zeros(n_frames * channels * ho * wo, dtype=dtype, device=index.device)
    out.index_put_((rows.long(),), torch.ones((), dtype=dtype, device=index.device), accumulate=True)
    return out.view(n_frames, channels, ho, wo)
