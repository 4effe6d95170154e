r"""Parameter records: the neuron constants (:class:`LIFParams`) and the learning rule (:class:`HM2BPRule`).

Both are frozen dataclasses: plain values that autograd Functions and the functional code take
instead of a module, and the one place the defaults live. ``official()`` gives the authors'
settings (``docs/algorithm.md``, "Neuron model" and "Weight update").
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # psp.py takes its defaults from LIFParams
    from hm2bp.functional.psp import PSPKernel

CONV_THRESHOLD_EPS = 0.0  # the official conv layers compare against exactly nu (FC and pool: 1e-6)


@dataclass(frozen=True)
class LIFParams:
    r"""Constants of one layer's LIF neurons (``docs/algorithm.md``, "Neuron model").

    Attributes:
        threshold: firing threshold :math:`\nu` (official MNIST MLP: hidden 20, output 8).
        tau_m, tau_s: membrane and synaptic time constants in steps (official 64, 8).
        refractory: :math:`T_{ref}` in steps (official 2); the minimum inter-spike interval is
            ``refractory + 1``.
        threshold_eps: a spike needs :math:`v > \nu - \varepsilon_\nu` (official: 1e-6 for fully
            connected and pooling layers, 0 for conv layers).
    """

    threshold: float
    tau_m: float = 64.0
    tau_s: float = 8.0
    refractory: int = 2
    threshold_eps: float = 1e-6

    @classmethod
    def official(cls, threshold: float, *, conv: bool = False) -> "LIFParams":
        """The authors' constants with ``threshold``; ``conv=True``: the conv layers' ``threshold_eps`` 0."""
        return cls(threshold=float(threshold), threshold_eps=CONV_THRESHOLD_EPS if conv else cls.threshold_eps)

    def psp_kernel(self, convention: str = "exact") -> PSPKernel:
        """The S-PSP kernel of ``convention`` (``"exact"``, ``"official"`` or ``"paper"``) for these neurons."""
        from hm2bp.functional.psp import PSPKernel

        return PSPKernel.make(convention, self.tau_m, self.tau_s, self.refractory)



@dataclass(frozen=True)
class HM2BPRule:
    """Options of the HM2-BP learning rule for one layer (``docs/algorithm.md``, "Weight update",
    "Lateral inhibition").

    ``threshold`` is the layer's :math:`\\nu` (``delta = g / nu``) and ``psp_kernel`` its S-PSP
    convention ("Spike-train-level PSP"); the rest are the rule's switches and constants.
    """

    threshold: float  # nu: delta = g / nu
    psp_kernel: PSPKernel  # S-PSP convention ("Spike-train-level PSP")
    effect_ratio: bool = True  # error through W∘rho (False: through W)
    side_effect: bool = True  # weight-gradient factor (1 + sigma)
    silent_spsp: float = 0.1  # e_ij for a silent post with an active pre
    silent_side_ratio: float = 0.5  # r_il for a silent post
    lateral_inhibition: float = 0.0  # w0 of the output inhibition -w0 (1 - I) ("Lateral inhibition")
    lateral_factor: bool = False  # gamma (needs lateral_inhibition > 0)
    target_injection: float | None = None  # desired count of a silent target's injected train
    max_lateral_factor: float = 10.0  # cap of gamma where its series diverges (ours, not official)
    reg_lambda: float = 0.0  # weight-norm regulariser lambda (official MNIST: 10)
    reg_beta: float = 0.0  # regulariser beta (official MNIST 0.04, N-MNIST 0.01, CNN test 0.4)
    reg_limit: float = 8.0  # regulariser weight limit L

    @classmethod
    def official(cls, neuron: LIFParams, *, output: bool = False, **changes) -> "HM2BPRule":
        """The authors' rule for a layer of ``neuron``: the official S-PSP kernel, effect ratio, side
        effect and silent-neuron constants; with ``output=True`` also their output layer's lateral
        inhibition 1, lateral factor and target injection 35. ``changes`` override single fields."""
        rule = cls(threshold=neuron.threshold, psp_kernel=neuron.psp_kernel("official"))
        if output:
            rule = dataclasses.replace(rule, lateral_inhibition=1.0, lateral_factor=True, target_injection=35.0)
        return dataclasses.replace(rule, **changes)
