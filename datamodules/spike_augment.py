r"""Augmentation of spike-list training trains (TI46, wav folders; docs/algorithm.md, "Input encoding").

The authors' TI46 trains are fixed files, so a network sees the same 3,000-odd trains every
epoch; at 100 epochs it fits them to about 90 % while the test tokens stay near 86 %
(docs/results.md, "TI46-Alpha"). :class:`SpikeJitter` draws a new version of every training
train each epoch. For sample :math:`b` with key :math:`k_b` and its :math:`r`-th spike
(channel :math:`c`, step :math:`t`):

.. math::

    s_b &= 1 + \text{stretch}\,(2u_b - 1) &&\text{(one time scale per sample)}\\
    t' &= \operatorname{round}(s_b\,t) + d_{b,r},\quad
        d_{b,r} = \lfloor (2J + 1)\,v_{b,r} \rfloor - J &&\text{(} J = \text{jitter steps)}\\
    \text{kept} &\iff w_{b,r} \ge \text{drop} \ \text{and}\ t' \ge 0

with :math:`u, v, w` uniform in [0, 1). The channel is unchanged; spikes that land on the same
``(channel, step)`` merge, and steps at or past T are dropped when the batch is densified.

The uniforms are counter-based hashes of ``(seed, sample index, epoch)`` and the spike's rank in
its sample, so an augmented train does not depend on the batch, the worker, the rank, the device
or a resume. Validation and test trains are never augmented.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hm2bp.checks import number
from hm2bp.datamodules.encoding import counter_uniforms, sample_keys

_SAMPLE_SALT = 0x7E11_5EED  # decorrelates these keys from the rate code's and the image distortion's
_STRETCH_SALT = 0x05C4_1E00
_JITTER_SALT = 0x0717_7E20
_DROP_SALT = 0x0D20_9000


@dataclass(frozen=True)
class SpikeJitter:
    """Magnitudes of :func:`jitter_spikes` (all 0: no change).

    Args:
        stretch: largest relative change of a sample's time axis (0.1: each train is scaled by a
            factor drawn from [0.9, 1.1]).
        jitter: largest shift of a single spike, in steps.
        drop: probability that a spike is deleted.
    """

    stretch: float = 0.0
    jitter: int = 0
    drop: float = 0.0

    def __post_init__(self) -> None:
        key = "data.init_args.augment"
        checked = {
            "stretch": number(f"{key}.stretch", self.stretch, low=0, high=0.99, hint="a relative time scale, e.g. 0.1"),
            "jitter": number(f"{key}.jitter", self.jitter, low=0, integer=True, hint="a shift in steps, e.g. 2"),
            "drop": number(f"{key}.drop", self.drop, low=0, high=0.99, hint="a deletion probability, e.g. 0.1"),
        }
        for name, value in checked.items():  # e.g. YAML's 2.0 steps -> 2
            object.__setattr__(self, name, value)

    @property
    def active(self) -> bool:
        return self.stretch > 0 or self.jitter > 0 or self.drop > 0


def spike_ranks(sample: Tensor, batch: int) -> Tensor:
    """Rank of each spike within its sample, for COO spikes grouped by sample (``sample`` non-decreasing)."""
    counts = torch.bincount(sample, minlength=batch)
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(len(sample), device=sample.device) - starts[sample]


def jitter_spikes(
    channels: Tensor,
    times: Tensor,
    sample: Tensor,
    index: Tensor,
    magnitudes: SpikeJitter,
    *,
    epoch: int,
    seed: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Stretch, jitter and thin a batch of COO spikes (the module docstring gives the equations).

    ``channels``, ``times``, ``sample`` ``[nnz]`` (grouped by sample, as
    :func:`~hm2bp.datamodules.spikelists.collate_spike_lists` gives them) and the samples' dataset
    ``index`` ``[B]`` -> the kept spikes' ``(channels, times, sample)``.
    """
    if not magnitudes.active or len(times) == 0:
        return channels, times, sample
    keys = sample_keys(seed ^ _SAMPLE_SALT, index.to(sample.device), epoch)  # [B]
    scale = 1.0 + magnitudes.stretch * (2.0 * counter_uniforms(keys, _STRETCH_SALT).to(torch.float64) - 1.0)
    new_times = torch.round(times.to(torch.float64) * scale[sample]).to(torch.int64)
    counters = (keys[sample] * 0x9E3779B1 + spike_ranks(sample, len(index))) & 0xFFFFFFFF
    if magnitudes.jitter > 0:
        j = magnitudes.jitter
        shift = torch.floor(counter_uniforms(counters, _JITTER_SALT) * (2 * j + 1)).to(torch.int64) - j
        new_times = new_times + shift.clamp_(-j, j)  # a float32 uniform can round up to 1.0
    keep = new_times >= 0
    if magnitudes.drop > 0:
        keep &= counter_uniforms(counters, _DROP_SALT) >= magnitudes.drop
    return channels[keep], new_times[keep], sample[keep]
