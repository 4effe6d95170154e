"""Pure tensor math of HM2-BP: LIF simulation, PSP traces, S-PSP and the backward rule.

Time-first layout everywhere: ``[T, B, ...]``. No ``nn.Module`` and no Lightning here.
"""
from hm2bp.functional.grad import HM2BPRule, hm2bp_backward, inject_target, lateral_factor, regulariser_grad
from hm2bp.functional.lif import lif_simulate
from hm2bp.functional.psp import CONVENTIONS, PSPKernel, exp_trace, free_psp, psp_traces
from hm2bp.functional.spsp import materialise, reset_coefficients, spsp, spsp_factors

__all__ = [
    "CONVENTIONS",
    "HM2BPRule",
    "PSPKernel",
    "exp_trace",
    "free_psp",
    "hm2bp_backward",
    "inject_target",
    "lateral_factor",
    "lif_simulate",
    "materialise",
    "psp_traces",
    "regulariser_grad",
    "reset_coefficients",
    "spsp",
    "spsp_factors",
]
