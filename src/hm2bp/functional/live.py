r"""Samples whose error is zero drop out of a layer's backward (``docs/algorithm.md``, "Weight update").

Every term of the HM2-BP rule of a sample :math:`b` carries its factor
:math:`\delta_{b} = g_b / \nu` (weight gradient, side effect, lateral factor, error to the inputs;
the silent-post constants too), and the error it hands the layer below is zero when its own is.
The official loss is zero inside its margin, so once a network has learned most samples of a
batch carry **no error at all** (the authors' trained CNN: 60 of 64 MNIST training samples) and
their backward is exact zeros. :class:`LiveSamples` lists the others; a layer runs its backward on
those alone and puts back what the dropped ones would have given:

.. math::  \frac{\partial E}{\partial w} = \sum_{b\ \text{live}} (\dots)_b + B\,\frac{\partial R}{\partial w},
    \qquad g^{prev}_b = 0\ \ (b\ \text{dropped}),

the regulariser :math:`R` still counted once per sample of the whole batch. The per-sample records
of the forward (trains ``[T, B, ...]``, counts ``[B, ...]``, labels ``[B]``, flat spike indices over
``[T, B, n]``) are narrowed with :meth:`LiveSamples.rows` and :meth:`LiveSamples.flat`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LiveSamples:
    """The samples ``index`` ``[B']`` (ascending) of a batch of ``batch`` whose error is not all zero."""

    index: Tensor
    batch: int

    @staticmethod
    def of(grad_counts: Tensor) -> "LiveSamples | None":
        """The live samples of ``dE/do`` ``[B, ...]``; ``None`` when every sample is live (nothing to
        drop). When no sample is live, sample 0 is kept (its terms are zeros), so a backward always
        sees at least one sample."""
        B = grad_counts.shape[0]
        live = grad_counts.reshape(B, -1).ne(0).any(1)
        if bool(live.all()):
            return None
        if not bool(live.any()):
            live[0] = True
        return LiveSamples(live.nonzero().squeeze(1), B)

    @property
    def count(self) -> int:
        """``B'``, the number of live samples."""
        return self.index.numel()

    @property
    def dropped(self) -> int:
        """``B - B'``: samples whose backward is zero."""
        return self.batch - self.count

    def rows(self, x: Tensor | None, dim: int = 0) -> Tensor | None:
        """The live samples of ``x`` along its batch dimension ``dim`` (``None`` stays ``None``)."""
        return None if x is None else x.index_select(dim, self.index)

    def flat(self, index: Tensor | None, T: int, per_sample: int) -> Tensor | None:
        """Flat spike indices over ``[T, B, per_sample]`` -> the live samples' spikes over
        ``[T, B', per_sample]``, same dtype; ascending stays ascending (the renumbering keeps the
        samples' order)."""
        if index is None:
            return None
        B = self.batch
        new_b = torch.full((B,), -1, dtype=torch.int64, device=index.device)
        new_b[self.index] = torch.arange(self.count, device=index.device)
        i = index.long()
        t = torch.div(i, B * per_sample, rounding_mode="floor")
        rem = i - t * (B * per_sample)
        b = torch.div(rem, per_sample, rounding_mode="floor")
        nb = new_b[b]
        keep = nb >= 0
        out = (t * self.count + nb) * per_sample + (rem - b * per_sample)
        return out[keep].to(index.dtype)

    def trains(self, pre: Tensor, post: Tensor, pre_index: Tensor | None,
               post_index: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """A layer's input and output trains ``[T, B, ...]`` and their flat spike indices (``None``
        stays ``None``), narrowed to the live samples."""
        T = pre.shape[0]
        return (self.rows(pre, 1), self.rows(post, 1), self.flat(pre_index, T, pre[0, 0].numel()),
                self.flat(post_index, T, post[0, 0].numel()))

    def scatter(self, x: Tensor | None) -> Tensor | None:
        """Rows of the live samples ``[B', ...]`` -> ``[B, ...]`` with zeros for the dropped ones."""
        if x is None:
            return None
        out = x.new_zeros((self.batch, *x.shape[1:]))
        out.index_copy_(0, self.index, x)
        return out


__all__ = ["LiveSamples"]
