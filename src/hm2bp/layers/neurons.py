"""Neuron constants shared by every spiking layer (spec §1.2, §1.3)."""
from __future__ import annotations

from torch import nn

from hm2bp.functional import PSPKernel


def set_neuron_constants(
    module: nn.Module,
    threshold: float,
    tau_m: float,
    tau_s: float,
    refractory: int,
    threshold_eps: float,
    spsp: str,
) -> PSPKernel:
    """Validate and store a layer's LIF constants; return the S-PSP kernel of its convention.

    Sets ``threshold`` (nu), ``tau_m``, ``tau_s``, ``refractory`` (T_ref), ``threshold_eps`` and
    ``spsp`` on ``module``.
    """
    name = type(module).__name__
    if threshold is None or threshold <= 0:
        raise ValueError(f"{name} needs a positive threshold, got {threshold}")
    if refractory < 0:
        raise ValueError(f"{name} refractory must be >= 0, got {refractory}")
    module.threshold = float(threshold)
    module.tau_m = float(tau_m)
    module.tau_s = float(tau_s)
    module.refractory = int(refractory)
    module.threshold_eps = float(threshold_eps)
    module.spsp = spsp
    return PSPKernel.make(spsp, tau_m, tau_s, refractory)
