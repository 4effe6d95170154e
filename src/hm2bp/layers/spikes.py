r"""``Spikes``: what one spiking layer hands the next (``docs/algorithm.md``, "Weight update",
count-level semantics).

HM2-BP's loss depends on spike counts only, so the one gradient that crosses a layer boundary is
:math:`\partial E/\partial o` ``[B, ...]``. Layers therefore pass each other

* ``trains``: the spike trains ``[T, B, ...]``, 0/1 in one byte (``bool``/``uint8``; data may
  also come as float 0/1), never differentiable;
* ``counts``: the spike counts ``[B, ...]`` in the compute dtype, the tensor that carries
  :math:`\partial E/\partial o` back (``None`` for data, which needs no gradient);
* ``index``: the ascending flat indices of the spikes in ``trains`` (int32 where it fits), when
  the producing layer listed them, so every train is listed once.

Fully connected, conv and pool layers all take and return this value. Float trains exist only at
the edges: :meth:`Spikes.of` accepts them (a differentiable float train's counts are its sum
over time), :meth:`Spikes.float_trains` returns the output layer's trains for a loss on
``trains.sum(0)``.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from hm2bp.functional.current import as_uint8


class Spikes(NamedTuple):
    """Spike trains ``[T, B, ...]`` (1 byte), their differentiable counts ``[B, ...]`` and spike index."""

    trains: Tensor
    counts: Tensor | None = None
    index: Tensor | None = None

    @classmethod
    def of(cls, x: "Tensor | Spikes") -> "Spikes":
        """``x`` as ``Spikes``: data trains pass as they are (no counts); a differentiable float train
        ``[T, B, ...]`` becomes its detached values plus ``counts = x.sum(0)``, whose gradient is
        ``dE/do`` broadcast over time back into ``x``."""
        if isinstance(x, Spikes):
            return x
        if x.requires_grad:
            return cls(x.detach(), x.sum(0))
        return cls(x)

    @property
    def shape(self) -> torch.Size:
        return self.trains.shape

    def dim(self) -> int:
        return self.trains.dim()

    def reshape(self, *shape: int) -> "Spikes":
        """Same spikes in another per-sample shape: ``trains`` ``[T, B, *shape]``, ``counts``
        ``[B, *shape]``. Row-major reshapes keep every flat position, so the index is kept too."""
        T, B = self.trains.shape[:2]
        counts = self.counts.reshape(B, *shape) if self.counts is not None else None
        return Spikes(self.trains.reshape(T, B, *shape), counts, self.index)

    def float_trains(self, dtype: torch.dtype | None = None) -> Tensor:
        """The trains as 0/1 floats ``[T, B, ...]`` (the network's output), differentiable through
        ``counts`` when they carry a gradient: ``dE/do`` is read back as the mean over time of the
        trains' gradient (equal to any time slice for a loss on ``trains.sum(0)``)."""
        if dtype is None:
            dtype = self.counts.dtype if self.counts is not None else torch.get_default_dtype()
        if self.counts is None or not self.counts.requires_grad:
            return as_uint8(self.trains).to(dtype)
        return _TrainsFromCounts.apply(self.trains, self.counts)


class _TrainsFromCounts(torch.autograd.Function):
    """Float trains ``[T, B, ...]`` whose gradient reaches the counts ``[B, ...]`` as its mean over time."""

    @staticmethod
    def forward(ctx, trains: Tensor, counts: Tensor) -> Tensor:  # noqa: D401 - autograd signature
        return as_uint8(trains).to(counts.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, grad.mean(0)
