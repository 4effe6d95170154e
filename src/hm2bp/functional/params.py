r"""Parameter records: the neuron constants (:class:`LIFParams`), the S-PSP kernel they imply
(:class:`PSPKernel`) and the learning rule (:class:`HM2BPRule`).

All three are frozen dataclasses: plain values that layers, autograd Functions and the functional
code take instead of loose keywords or a module, and the one place the defaults live. A record
checks its values once, when it is built (one :class:`~hm2bp.errors.ConfigError` naming the key);
everything that takes a record trusts it. ``official()`` gives the authors' settings
(``docs/algorithm.md``, "Neuron model" and "Weight update").

Every layer holds one :class:`LIFParams` (``layer.neuron``) and, if it learns, one
:class:`HM2BPRule` (``layer.rule``). The rule holds no neuron constant: the backward takes both
records, :math:`\nu` (``delta = g / nu``) and the S-PSP kernel come from the neuron record.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import InitVar, dataclass
from functools import cached_property

from hm2bp.checks import number
from hm2bp.errors import ConfigError
from hm2bp.functional.scan_backend import SCAN_BACKENDS

CONVENTIONS = ("exact", "official", "paper")  # S-PSP conventions ("Spike-train-level PSP")
CONV_THRESHOLD_EPS = 0.0  # the official conv layers compare against exactly nu (FC and pool: 1e-6)


@dataclass(frozen=True)
class LIFParams:
    r"""Constants of one layer's LIF neurons (``docs/algorithm.md``, "Neuron model").

    Attributes:
        threshold: firing threshold :math:`\nu` (official MNIST MLP: hidden 20, output 8).
        tau_m, tau_s: membrane and synaptic time constants in steps (official 64, 8); ``tau_m > tau_s``.
        refractory: :math:`T_{ref}` in steps (official 2); the minimum inter-spike interval is
            ``refractory + 1``.
        threshold_eps: a spike needs :math:`v > \nu - \varepsilon_\nu` (official: 1e-6 for fully
            connected and pooling layers, 0 for conv layers).
        psp: S-PSP convention of the layer's backward, ``"exact"``, ``"official"`` or ``"paper"``
            ("Spike-train-level PSP"); :attr:`psp_kernel` holds its constants.
        scan_backend: what runs the layer's time-step scans (LIF forward, adjoint and PSP traces):
            ``"auto"`` (fused Triton kernels for float32 CUDA tensors when Triton is installed, else
            eager), ``"eager"`` or ``"triton"`` (``scan_backend.py``); the same spikes either way.
        where: init-only: the owner named in error messages (e.g. ``"SpikingLinear"``); not stored.
    """

    threshold: float
    tau_m: float = 64.0
    tau_s: float = 8.0
    refractory: int = 2
    threshold_eps: float = 1e-6
    psp: str = "exact"
    scan_backend: str = "auto"
    where: InitVar[str] = "LIFParams"

    def __post_init__(self, where: str) -> None:
        official = f"(official {LIFParams.tau_m:g} and {LIFParams.tau_s:g})"
        checked = dict(
            threshold=number(f"{where} threshold", self.threshold, low=0, low_open=True,
                             hint="a positive firing threshold (model.network.init_args.thresholds in a config)"),
            tau_m=number(f"{where} tau_m", self.tau_m, low=0, low_open=True,
                         hint=f"membrane time constant in steps {official}"),
            tau_s=number(f"{where} tau_s", self.tau_s, low=0, low_open=True,
                         hint=f"synaptic time constant in steps {official}"),
            refractory=number(f"{where} refractory", self.refractory, low=0, integer=True,
                              hint=f"refractory period in steps (official {LIFParams.refractory})"),
            threshold_eps=number(f"{where} threshold_eps", self.threshold_eps, low=0),
        )
        if not checked["tau_m"] > checked["tau_s"]:
            raise ConfigError(f"{where}: tau_m={self.tau_m} must exceed tau_s={self.tau_s} {official}")
        if self.psp not in CONVENTIONS:
            raise ConfigError(f"{where}: psp must be one of {list(CONVENTIONS)}, got {self.psp!r}")
        if self.scan_backend not in SCAN_BACKENDS:
            raise ConfigError(f"{where}: scan_backend must be one of {list(SCAN_BACKENDS)}, got {self.scan_backend!r}")
        for key, value in checked.items():  # plain float / int, whatever number type came in
            object.__setattr__(self, key, int(value) if key == "refractory" else float(value))

    @classmethod
    def official(cls, threshold: float, *, conv: bool = False) -> "LIFParams":
        """The authors' constants and S-PSP convention with ``threshold``; ``conv=True``: the conv
        layers' ``threshold_eps`` 0."""
        return cls(threshold, threshold_eps=CONV_THRESHOLD_EPS if conv else cls.threshold_eps, psp="official")

    @classmethod
    def of(cls, neuron: "LIFParams | float", where: str, **defaults) -> "LIFParams":
        """``neuron`` if it is a record; a bare number is the threshold of a record with ``defaults``
        (errors name ``where``, the layer that was given the number)."""
        if isinstance(neuron, LIFParams):
            return neuron
        return cls(neuron, **defaults, where=where)

    @cached_property
    def psp_kernel(self) -> PSPKernel:
        """The S-PSP kernel of :attr:`psp` for these neurons."""
        return PSPKernel.make(self.psp, self.tau_m, self.tau_s, self.refractory, scan_backend=self.scan_backend)


@dataclass(frozen=True)
class PSPKernel:
    r"""Constants of one S-PSP convention (:mod:`hm2bp.functional.psp` has the equations).

    The never-reset unit PSP of one input spike is :math:`C (A^{(a)} - A^{(b)})`, two geometric
    traces delayed by :math:`\Delta`:

    * ``exact``: :math:`a = 1 - 1/\tau_m`, :math:`b = 1 - 1/\tau_s`, :math:`\Delta = 0`, :math:`r_1 = 0`, no window;
    * ``official``: :math:`a = e^{-1/\tau_m}`, :math:`b = e^{-1/\tau_s}`, :math:`\Delta = T_{ref}`,
      :math:`r_1 = 1`, window :math:`4\tau_m`, pre spikes from :math:`t = 1`;
    * ``paper``: the continuous kernel without shift, window or first-reset offset.
    """

    decay_m: float  # a: per-step decay of the tau_m trace
    decay_s: float  # b: per-step decay of the tau_s trace
    scale: float  # C = tau_m / (tau_m - tau_s)
    shift: int  # Delta: pre-spike shift in steps
    first_reset: int  # r_1
    window: int | None  # W: pre spikes with t_pre >= t_post - W count (None: all)
    min_pre_time: int  # pre spikes earlier than this never count (official: 1)
    refractory: int  # T_ref: r_f = t_{f-1} + T_ref
    scan_backend: str = "auto"  # what runs the trace scans (LIFParams.scan_backend)

    @classmethod
    def make(cls, convention: str, tau_m: float = LIFParams.tau_m, tau_s: float = LIFParams.tau_s,
             refractory: int = LIFParams.refractory, *, scan_backend: str = "auto") -> "PSPKernel":
        """The kernel of ``convention`` for neurons with these constants (defaults:
        :class:`LIFParams`'s, the official 64, 8, 2). The constants are those of a :class:`LIFParams`, which
        checked them; ``LIFParams.psp_kernel`` is the usual way in."""
        scale = tau_m / (tau_m - tau_s)
        if convention == "exact":
            return cls(1 - 1 / tau_m, 1 - 1 / tau_s, scale, 0, 0, None, 0, refractory, scan_backend)
        decay_m, decay_s = math.exp(-1 / tau_m), math.exp(-1 / tau_s)
        if convention == "official":
            return cls(decay_m, decay_s, scale, refractory, 1, int(4 * tau_m), 1, refractory, scan_backend)
        if convention == "paper":
            return cls(decay_m, decay_s, scale, 0, 0, None, 0, refractory, scan_backend)
        raise ValueError(f"PSPKernel.make: convention must be one of {list(CONVENTIONS)}, got {convention!r}")


@dataclass(frozen=True)
class HM2BPRule:
    """Options of the HM2-BP learning rule for one layer (``docs/algorithm.md``, "Weight update",
    "Lateral inhibition"): its switches and constants. The layer's :math:`\\nu` and S-PSP kernel
    are the neuron record's (:class:`LIFParams`), which the backward takes beside this one.
    ``where`` (init-only) names the owner in error messages.
    """

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
    where: InitVar[str] = "HM2BPRule"

    def __post_init__(self, where: str) -> None:
        number(f"{where} lateral_inhibition", self.lateral_inhibition)
        number(f"{where} target_injection", self.target_injection, low=0, low_open=True, none_ok=True,
               hint="the desired count of the injected train (model.network.init_args.target_injection), or null")
        number(f"{where} silent_spsp", self.silent_spsp)
        number(f"{where} silent_side_ratio", self.silent_side_ratio)
        number(f"{where} max_lateral_factor", self.max_lateral_factor, low=1)
        for key in ("reg_lambda", "reg_beta", "reg_limit"):
            number(f"{where} {key}", getattr(self, key), low=0, hint=f"model.network.init_args.{key} in a config")

    @classmethod
    def official(cls, *, output: bool = False, **changes) -> "HM2BPRule":
        """The authors' rule: effect ratio, side effect and silent-neuron constants; with
        ``output=True`` also their output layer's lateral inhibition 1, lateral factor and target
        injection 35. ``changes`` override single fields. (Their S-PSP convention is
        ``LIFParams.official``'s ``psp``.)"""
        rule = cls()
        if output:
            rule = dataclasses.replace(rule, lateral_inhibition=1.0, lateral_factor=True, target_injection=35.0)
        return dataclasses.replace(rule, **changes)
