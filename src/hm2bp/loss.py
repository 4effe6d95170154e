r"""``SpikeCountLoss``: the HM2-BP loss on output spike counts (paper Eq. 1, spec §3.1).

.. math::  E = \tfrac12 \sum_b \sum_k g_{bk}^2,\qquad
           g_{bk} = (o_{bk} - y_{bk})\,[\,|o_{bk} - y_{bk}| > m\,]

with targets :math:`y = ` ``desired`` for the label and ``undesired`` otherwise, and the
official margin :math:`m` (errors inside the margin are zero). So :math:`\partial E/\partial o = g`
exactly, the output error of spec §3.4 step 1. The loss is **summed** over the batch, so the
weight gradients are sums of per-sample HM2-BP gradients (spec §8 item 7).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class SpikeCountLoss(nn.Module):
    """Margin-gated squared error between output spike counts and desired counts.

    Args:
        desired: count wanted from the labelled neuron (official 35 at T = 400).
        undesired: count wanted from every other neuron (official 5).
        margin: no error while ``|o - y| <= margin`` (official 5).
        reduction: ``"sum"`` over the batch (default: per-sample gradients add up) or ``"mean"``.
    """

    def __init__(self, desired: float = 35.0, undesired: float = 5.0, margin: float = 5.0, reduction: str = "sum"):
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        if desired <= undesired:
            raise ValueError(f"desired count ({desired}) must exceed the undesired count ({undesired})")
        self.desired = float(desired)
        self.undesired = float(undesired)
        self.margin = float(margin)
        self.reduction = reduction

    def targets(self, target: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Desired counts ``[B, classes]`` for labels ``[B]``."""
        y = torch.full((target.shape[0], num_classes), self.undesired, dtype=dtype, device=target.device)
        y[torch.arange(target.shape[0], device=target.device), target] = self.desired
        return y

    def forward(self, counts: Tensor, target: Tensor) -> Tensor:
        """``counts`` ``[B, classes]`` (differentiable), ``target`` ``[B]`` -> scalar loss."""
        y = self.targets(target, counts.shape[-1], counts.dtype)
        diff = counts - y
        mask = (diff.detach().abs() > self.margin).to(counts.dtype)
        loss = 0.5 * (mask * diff * diff).sum()
        return loss / counts.shape[0] if self.reduction == "mean" else loss
