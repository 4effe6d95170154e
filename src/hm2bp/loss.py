r"""``SpikeCountLoss``: the HM2-BP loss on output spike counts
(``docs/algorithm.md``, "Weight update").

.. math::  E = \tfrac12 \sum_b \sum_k g_{bk}^2,\qquad
           g_{bk} = (o_{bk} - y_{bk})\,[\,|o_{bk} - y_{bk}| > m\,]

with targets :math:`y = ` ``desired`` for the label and ``undesired`` otherwise, and the
official margin :math:`m` (errors inside the margin are zero). So :math:`\partial E/\partial o = g`
exactly, the output error ("Weight update"). The loss is **summed** over the batch, so the
weight gradients are sums of per-sample HM2-BP gradients.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from hm2bp.checks import check_labels, number
from hm2bp.errors import ConfigError, InputError


class SpikeCountLoss(nn.Module):
    """Margin-gated squared error between output spike counts and desired counts.

    Args:
        desired: count wanted from the labelled neuron (official 35 at T = 400).
        undesired: count wanted from every other neuron (official 5).
        margin: no error while ``|o - y| <= margin`` (official 5).
        reduction: ``"sum"`` over the batch (default: per-sample gradients add up) or ``"mean"``.
        check_inputs: check every call: ``counts`` a finite, non-negative ``[B >= 1, classes]`` float
            tensor, ``target`` ``[B]`` class indices (two reductions); ``False`` skips it.

    Counts are rates in disguise: ``desired`` must be reachable in T steps (at most
    :func:`hm2bp.checks.max_spike_count`); :class:`hm2bp.SpikingClassifier` checks it when it knows T.
    """

    def __init__(self, desired: float = 35.0, undesired: float = 5.0, margin: float = 5.0, reduction: str = "sum",
                 check_inputs: bool = True):
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise ConfigError(f"model.loss.init_args.reduction must be 'sum' or 'mean', got {reduction!r}")
        number("model.loss.init_args.desired", desired, low=0, low_open=True)
        number("model.loss.init_args.undesired", undesired, low=0)
        number("model.loss.init_args.margin", margin, low=0)
        if desired <= undesired:
            raise ConfigError(
                f"model.loss.init_args.desired={desired} must exceed model.loss.init_args.undesired={undesired}"
            )
        self.check_inputs = bool(check_inputs)
        self.desired = float(desired)
        self.undesired = float(undesired)
        self.margin = float(margin)
        self.reduction = reduction

    def targets(self, target: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Desired counts ``[B, classes]`` for labels ``[B]``."""
        y = torch.full((target.shape[0], num_classes), self.undesired, dtype=dtype, device=target.device)
        y[torch.arange(target.shape[0], device=target.device), target] = self.desired
        return y

    def forward(self, counts: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """``counts`` ``[B, classes]`` (differentiable), ``target`` ``[B]`` -> scalar loss.

        ``weight`` ``[B]`` (optional) scales each sample's term, so its output error becomes
        :math:`\beta_b g_{bk}` (the authors' boosting, :class:`hm2bp.boosting.SampleBoosting`)."""
        if self.check_inputs:
            self.check(counts, target)
        y = self.targets(target, counts.shape[-1], counts.dtype)
        diff = counts - y
        mask = (diff.detach().abs() > self.margin).to(counts.dtype)
        terms = mask * diff * diff
        if weight is not None:
            if weight.shape != counts.shape[:1]:
                raise InputError(f"SpikeCountLoss: weight must be [B] = {tuple(counts.shape[:1])}, got "
                                 f"{tuple(weight.shape)}")
            terms = terms * weight.to(counts.dtype)[:, None]
        loss = 0.5 * terms.sum()
        return loss / counts.shape[0] if self.reduction == "mean" else loss

    def check(self, counts: Tensor, target: Tensor) -> None:
        """One :class:`~hm2bp.errors.InputError` for counts or labels the loss cannot use."""
        if not isinstance(counts, Tensor) or counts.dim() != 2 or counts.shape[0] == 0 or counts.shape[1] == 0:
            shape = tuple(counts.shape) if isinstance(counts, Tensor) else type(counts).__name__
            raise InputError(
                f"SpikeCountLoss expects output spike counts [B >= 1, classes >= 1], got {shape}; "
                "sum the output trains over time first (spikes.sum(0))"
            )
        if not counts.is_floating_point():
            raise InputError(f"SpikeCountLoss expects floating-point counts (to differentiate), got dtype {counts.dtype}")
        if bool((~torch.isfinite(counts.detach()) | (counts.detach() < 0)).any()):
            raise InputError("SpikeCountLoss: counts must be finite and non-negative (spike counts), got NaN, Inf or < 0")
        check_labels(target, counts.shape[1], counts.shape[0], "SpikeCountLoss")
