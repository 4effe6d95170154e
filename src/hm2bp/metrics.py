r"""Spike statistics as ``torchmetrics`` Metrics, with sum-reduced integer state (exact under DDP).

Every state is a sum of integers (spike counts, sample counts, neuron-sample pairs) reduced with
``dist_reduce_fx="sum"``, so a multi-process ``compute()`` gives exactly the single-process numbers
on the union of the samples. Inputs are per-sample spike **counts** over a window of ``T`` steps,
``counts = spikes.sum(0)`` of a ``[T, B, ...]`` train, shape ``[B, N...]`` (float or int; must hold
non-negative integers).

Definitions for one layer of ``N`` neurons over ``S`` samples of ``T`` steps each
(:math:`c_{sn}` = spikes of neuron ``n`` in sample ``s``; ``T`` may vary between updates, then
:math:`\sum_s T_s` replaces :math:`S T`):

* ``rate`` = :math:`\sum c / (N \sum_s T_s)`: spikes per neuron per time step;
* ``count`` = :math:`\sum c / (N S)`: spikes per neuron per sample;
* ``silent_frac`` = fraction of (sample, neuron) pairs with :math:`c_{sn} = 0` (per-sample silence,
  averaged over samples);
* ``dead_frac`` = fraction of neurons with :math:`\sum_s c_{sn} = 0`: silent on **every** sample
  seen since the last ``reset()`` (for the callbacks: the whole validation epoch);
* ``saturated_frac`` = fraction of (sample, neuron) pairs with :math:`c_{sn} \ge (1-\text{tol})\,
  T_s/(T_{ref}+1)`, i.e. within ``tol`` (relative) of the refractory-limited maximum rate
  :math:`1/(T_{ref}+1)` (the minimum inter-spike interval is :math:`T_{ref}+1` steps);
* ``epoch_saturated_frac`` = fraction of neurons whose accumulated rate
  :math:`\sum_s c_{sn}/\sum_s T_s` is within ``tol`` of :math:`1/(T_{ref}+1)`;
* ``samples`` = :math:`S`, ``steps`` = :math:`\sum_s T_s`;
* ``neuron_rates`` ``[N]`` = :math:`\sum_s c_{sn}/\sum_s T_s`;
* ``hist`` ``[bins]`` = number of (sample, neuron) pairs whose rate :math:`c_{sn}/T_s` falls in
  each of ``bins`` equal bins on :math:`[0, 1/(T_{ref}+1)]` (``hist_edges``, ``bins + 1``
  values; the last bin is closed and also takes any larger rate). The first bin holds the silent
  pairs and the near-silent ones.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["SpikeStatistics", "TargetCountStatistics"]


def _as_counts(counts: Tensor) -> Tensor:
    """``[B, N...]`` float/int counts -> ``[B, N]`` int64 (rounded; floats hold exact integers)."""
    if counts.dim() < 1:
        raise ValueError("counts must be [B, N...], got a scalar")
    c = counts.detach().reshape(counts.shape[0], -1)  # [B, N]
    if c.is_floating_point():
        c = c.round()
    return c.to(torch.int64)


class SpikeStatistics(Metric):
    """Firing rate, silent / saturated fractions and a rate histogram of one layer.

    Args:
        num_neurons: ``N``, the number of neurons (product of the non-batch dimensions).
        refractory: :math:`T_{ref}` of the layer in steps (the maximum rate is ``1/(T_ref+1)``).
        saturation_tol: relative tolerance of "saturated" (default 0.1: rate >= 90% of the maximum).
        bins: number of histogram bins on ``[0, 1/(T_ref+1)]``.

    ``update(counts, time_steps)`` takes counts ``[B, N...]`` of one batch and the window ``T``.
    ``compute()`` returns a dict (see the module docstring for each key).

    Example:
        >>> m = SpikeStatistics(num_neurons=3, refractory=2)
        >>> m.update(torch.tensor([[0., 2., 4.], [0., 0., 4.]]), time_steps=12)
        >>> {k: round(float(v), 4) for k, v in m.compute().items() if v.dim() == 0}
        {'rate': 0.1389, 'count': 1.6667, 'silent_frac': 0.5, 'dead_frac': 0.3333, 'saturated_frac': 0.3333, 'epoch_saturated_frac': 0.3333, 'samples': 2.0, 'steps': 24.0}
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, num_neurons: int, refractory: int = 2, saturation_tol: float = 0.1, bins: int = 20, **kwargs):
        super().__init__(**kwargs)
        if int(num_neurons) < 1:
            raise ValueError(f"num_neurons must be >= 1, got {num_neurons}")
        if int(refractory) < 0:
            raise ValueError(f"refractory must be >= 0, got {refractory}")
        if not 0.0 <= saturation_tol < 1.0:
            raise ValueError(f"saturation_tol must be in [0, 1), got {saturation_tol}")
        if int(bins) < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.num_neurons = int(num_neurons)
        self.refractory = int(refractory)
        self.saturation_tol = float(saturation_tol)
        self.bins = int(bins)
        self.max_rate = 1.0 / (self.refractory + 1)
        zero = lambda: torch.zeros((), dtype=torch.int64)  # noqa: E731
        self.add_state("spikes", zero(), dist_reduce_fx="sum")  # sum of all counts
        self.add_state("samples", zero(), dist_reduce_fx="sum")  # S
        self.add_state("steps", zero(), dist_reduce_fx="sum")  # sum_s T_s
        self.add_state("silent_pairs", zero(), dist_reduce_fx="sum")  # #(s, n) with c = 0
        self.add_state("saturated_pairs", zero(), dist_reduce_fx="sum")  # #(s, n) saturated
        self.add_state("neuron_spikes", torch.zeros(self.num_neurons, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("hist", torch.zeros(self.bins, dtype=torch.int64), dist_reduce_fx="sum")

    def saturation_count(self, time_steps: int) -> float:
        """Smallest count that counts as saturated in a window of ``time_steps`` steps."""
        return (1.0 - self.saturation_tol) * time_steps * self.max_rate

    @property
    def hist_edges(self) -> Tensor:
        """``[bins + 1]`` rate edges of ``hist`` (spikes per step)."""
        return torch.linspace(0.0, self.max_rate, self.bins + 1, dtype=torch.float64)

    def update(self, counts: Tensor, time_steps: int) -> None:
        """Add a batch: ``counts`` ``[B, N...]`` spikes of each neuron over ``time_steps`` steps."""
        c = _as_counts(counts)  # [B, N]
        if c.shape[1] != self.num_neurons:
            raise ValueError(f"counts have {c.shape[1]} neurons per sample, the metric was built for {self.num_neurons}")
        T = int(time_steps)
        if T < 1:
            raise ValueError(f"time_steps must be >= 1, got {time_steps}")
        B = c.shape[0]
        self.spikes += c.sum()
        self.samples += B
        self.steps += B * T
        self.silent_pairs += (c == 0).sum()
        # integer comparison: c >= ceil(threshold) (float threshold, integer counts)
        self.saturated_pairs += (c >= math.ceil(self.saturation_count(T) - 1e-9)).sum()
        self.neuron_spikes += c.sum(0)
        # bin index of rate c/T on [0, max_rate] with `bins` bins: floor(c * bins * (T_ref+1) / T)
        idx = torch.div(c * (self.bins * (self.refractory + 1)), T, rounding_mode="floor").clamp_(max=self.bins - 1)
        idx = idx.reshape(-1)
        # index_add_, not bincount: bincount reads the max on the host (a device sync on GPUs)
        self.hist.index_add_(0, idx, torch.ones_like(idx))

    def compute(self) -> dict[str, Tensor]:
        N = self.num_neurons
        spikes = self.spikes.double()
        samples = self.samples.double()
        steps = self.steps.double()
        neuron_rates = self.neuron_spikes.double() / steps
        pairs = samples * N
        sat_rate = (1.0 - self.saturation_tol) * self.max_rate
        return {
            "rate": spikes / (steps * N),
            "count": spikes / pairs,
            "silent_frac": self.silent_pairs.double() / pairs,
            "dead_frac": (self.neuron_spikes == 0).double().mean(),
            "saturated_frac": self.saturated_pairs.double() / pairs,
            "epoch_saturated_frac": (neuron_rates >= sat_rate - 1e-12).double().mean(),
            "samples": samples,
            "steps": steps,
            "neuron_rates": neuron_rates,
            "hist": self.hist.clone(),
        }


class TargetCountStatistics(Metric):
    """Output layer: the labelled (target) neuron's count against the desired count.

    Args:
        desired: the desired target count (``SpikeCountLoss.desired``, e.g. 35 at T = 400).

    ``update(counts, target)``: output counts ``[B, classes]``, labels ``[B]``. ``compute()``:

    * ``target_count``: mean over samples of the target neuron's count :math:`o_{s,y_s}`;
    * ``target_error``: mean of :math:`|o_{s,y_s} - \\text{desired}|`;
    * ``target_silent_frac``: fraction of samples whose target neuron fired 0 spikes;
    * ``other_count``: mean count of the non-target neurons (per neuron per sample);
    * ``samples``.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, desired: float, **kwargs):
        super().__init__(**kwargs)
        self.desired = float(desired)
        zero = lambda: torch.zeros((), dtype=torch.int64)  # noqa: E731
        self.add_state("samples", zero(), dist_reduce_fx="sum")
        self.add_state("target_spikes", zero(), dist_reduce_fx="sum")
        self.add_state("other_spikes", zero(), dist_reduce_fx="sum")
        self.add_state("other_pairs", zero(), dist_reduce_fx="sum")
        self.add_state("target_silent", zero(), dist_reduce_fx="sum")
        # sum of |o - desired| (float64: exact for integer or half-integer desired counts)
        self.add_state("abs_error", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, counts: Tensor, target: Tensor) -> None:
        """``counts`` ``[B, classes]`` output spike counts, ``target`` ``[B]`` labels."""
        c = _as_counts(counts)  # [B, C]
        target = target.reshape(-1).to(device=c.device, dtype=torch.int64)
        if target.shape[0] != c.shape[0]:
            raise ValueError(f"counts have {c.shape[0]} samples but target has {target.shape[0]}")
        o_t = c.gather(1, target[:, None]).squeeze(1)  # [B]
        self.samples += c.shape[0]
        self.target_spikes += o_t.sum()
        self.other_spikes += c.sum() - o_t.sum()
        self.other_pairs += c.shape[0] * (c.shape[1] - 1)
        self.target_silent += (o_t == 0).sum()
        self.abs_error += (o_t.double() - self.desired).abs().sum()

    def compute(self) -> dict[str, Tensor]:
        samples = self.samples.double()
        return {
            "target_count": self.target_spikes.double() / samples,
            "target_error": self.abs_error / samples,
            "target_silent_frac": self.target_silent.double() / samples,
            "other_count": self.other_spikes.double() / self.other_pairs.double(),
            "samples": samples,
        }
