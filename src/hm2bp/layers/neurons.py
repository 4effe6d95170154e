"""What every spiking layer shares: its neuron record and its learning-rule record.

``docs/algorithm.md``, "Neuron model". A layer holds one :class:`~hm2bp.functional.LIFParams`
(``layer.neuron``, checked when it was built) and one :class:`~hm2bp.functional.HM2BPRule`
(``layer.rule``); :class:`NeuronLayer` makes the neuron record's fields readable as attributes
(``threshold``, ``tau_m``, ``tau_s``, ``refractory``, ``threshold_eps``, ``psp``, ``psp_kernel``).
:func:`psp_option` reads the S-PSP convention of a flat config (``psp`` or its old name ``spsp``).
"""
from __future__ import annotations

import torch
from torch import nn

from hm2bp.checks import number
from hm2bp.errors import ConfigError
from hm2bp.functional import CONVENTIONS, HM2BPRule, LIFParams


def psp_option(name: str, psp: str | None, spsp: str | None = None) -> str:
    """The S-PSP convention from the ``psp`` option or its old name ``spsp`` (kept as an alias)."""
    if psp is not None and spsp is not None and psp != spsp:
        raise ConfigError(f"{name}: psp={psp!r} and its old name spsp={spsp!r} disagree; give one of them")
    value = psp if psp is not None else spsp if spsp is not None else "exact"
    if value not in CONVENTIONS:
        key = "psp" if psp is not None or spsp is None else "spsp"  # the name the caller used
        raise ConfigError(f"{name}: {key} must be one of {list(CONVENTIONS)}, got {value!r}")
    return value


class NeuronLayer(nn.Module):
    """Base of the spiking layers: the records ``neuron`` and ``rule``, the neuron record's fields
    as read-only attributes."""

    neuron: LIFParams
    rule: HM2BPRule | None

    threshold = property(lambda self: self.neuron.threshold)
    tau_m = property(lambda self: self.neuron.tau_m)
    tau_s = property(lambda self: self.neuron.tau_s)
    refractory = property(lambda self: self.neuron.refractory)
    threshold_eps = property(lambda self: self.neuron.threshold_eps)
    psp = property(lambda self: self.neuron.psp, doc="The S-PSP convention of the layer's backward.")
    spsp = property(lambda self: self.neuron.psp, doc="Old name of ``psp`` (the S-PSP convention).")
    psp_kernel = property(lambda self: self.neuron.psp_kernel, doc="The S-PSP kernel of the layer's backward.")

    def __init__(self, neuron: LIFParams | float, rule: HM2BPRule | None = None, **defaults) -> None:
        """Hold ``neuron`` (a bare number is the threshold of a record with ``defaults``) and
        ``rule`` (default: :class:`HM2BPRule`'s defaults; the BPTT baselines have none, ``None``)."""
        super().__init__()
        self.neuron = LIFParams.of(neuron, type(self).__name__, **defaults)
        self.rule = rule

    def init_weight(self, shape: tuple[int, ...], init_range: float) -> nn.Parameter:
        """A weight of ``shape`` drawn from U(-init_range, init_range) (``init_range > 0``)."""
        number(f"{type(self).__name__} init_range", init_range, low=0, low_open=True)
        self.init_range = init_range
        return nn.Parameter(torch.empty(shape).uniform_(-init_range, init_range))
