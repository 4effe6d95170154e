"""Neuron constants of every spiking layer: validated into a :class:`~hm2bp.functional.LIFParams` record.

``docs/algorithm.md``, "Neuron model". Layers hold one record (``layer.neuron``) and read
``threshold``, ``tau_m``, ``tau_s``, ``refractory`` and ``threshold_eps`` from it (:class:`NeuronLayer`).
"""
from __future__ import annotations

import dataclasses

from torch import nn

from hm2bp.checks import number
from hm2bp.errors import ConfigError
from hm2bp.functional import LIFParams
from hm2bp.functional.psp import CONVENTIONS


def neuron_params(
    name: str, threshold: float, tau_m: float, tau_s: float, refractory: int, threshold_eps: float
) -> LIFParams:
    """Check a layer's LIF constants (one :class:`ConfigError` naming the bad one) -> the record."""
    threshold = number(f"{name} threshold", threshold, low=0, low_open=True,
                       hint="a positive firing threshold (model.network.init_args.thresholds in a config)")
    tau_m = number(f"{name} tau_m", tau_m, low=0, low_open=True,
                   hint=f"membrane time constant in steps (official {LIFParams.tau_m:g})")
    tau_s = number(f"{name} tau_s", tau_s, low=0, low_open=True,
                   hint=f"synaptic time constant in steps (official {LIFParams.tau_s:g})")
    refractory = number(f"{name} refractory", refractory, low=0, integer=True,
                        hint=f"refractory period in steps (official {LIFParams.refractory})")
    threshold_eps = number(f"{name} threshold_eps", threshold_eps, low=0)
    if not tau_m > tau_s:
        raise ConfigError(f"{name}: tau_m={tau_m} must exceed tau_s={tau_s} "
                          f"(official {LIFParams.tau_m:g} and {LIFParams.tau_s:g})")
    return LIFParams(float(threshold), float(tau_m), float(tau_s), int(refractory), float(threshold_eps))


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
    """Base of the spiking layers: the neuron record ``neuron`` and the S-PSP convention ``psp``,
    with the record's fields readable as attributes. :meth:`set_neuron` swaps the record and
    keeps the learning rule (``rule``) or the pool layer's ``psp_kernel`` in step with it."""

    neuron: LIFParams
    psp: str

    threshold = property(lambda self: self.neuron.threshold)
    tau_m = property(lambda self: self.neuron.tau_m)
    tau_s = property(lambda self: self.neuron.tau_s)
    refractory = property(lambda self: self.neuron.refractory)
    threshold_eps = property(lambda self: self.neuron.threshold_eps)
    spsp = property(lambda self: self.psp, doc="Old name of ``psp`` (the S-PSP convention).")

    def set_neuron(self, neuron: LIFParams) -> None:
        """Use ``neuron``'s constants (e.g. those of an imported graph); the rule follows."""
        self.neuron = neuron
        kernel = neuron.psp_kernel(self.psp)
        if getattr(self, "rule", None) is not None:
            self.rule = dataclasses.replace(self.rule, threshold=neuron.threshold, psp_kernel=kernel)
        else:
            self.psp_kernel = kernel
