"""Neuron constants shared by every spiking layer (spec §1.2, §1.3)."""
from __future__ import annotations

from torch import nn

from hm2bp.checks import number
from hm2bp.errors import ConfigError
from hm2bp.functional import PSPKernel
from hm2bp.functional.psp import CONVENTIONS


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
    threshold = number(f"{name} threshold", threshold, low=0, low_open=True,
                       hint="a positive firing threshold (model.network.init_args.thresholds in a config)")
    tau_m = number(f"{name} tau_m", tau_m, low=0, low_open=True, hint="membrane time constant in steps (official 64)")
    tau_s = number(f"{name} tau_s", tau_s, low=0, low_open=True, hint="synaptic time constant in steps (official 8)")
    refractory = number(f"{name} refractory", refractory, low=0, integer=True, hint="refractory period in steps (official 2)")
    threshold_eps = number(f"{name} threshold_eps", threshold_eps, low=0)
    if not tau_m > tau_s:
        raise ConfigError(f"{name}: tau_m={tau_m} must exceed tau_s={tau_s} (official 64 and 8)")
    if spsp not in CONVENTIONS:
        raise ConfigError(f"{name}: spsp must be one of {list(CONVENTIONS)}, got {spsp!r}")
    module.threshold = float(threshold)
    module.tau_m = float(tau_m)
    module.tau_s = float(tau_s)
    module.refractory = int(refractory)
    module.threshold_eps = float(threshold_eps)
    module.spsp = spsp
    return PSPKernel.make(spsp, tau_m, tau_s, refractory)
