"""Pure tensor math of HM2-BP: LIF simulation, PSP traces, S-PSP and the backward rule.

Time-first layout everywhere: ``[T, B, ...]``. No ``nn.Module`` and no Lightning here; the
parameter records (:class:`LIFParams`, :class:`HM2BPRule`) are plain frozen values. Threads are
the caller's run-level setting (``torch.set_num_threads``); nothing here changes them.
``spsp(pre, post, convention=...)`` is :func:`hm2bp.functional.reference.spsp_matrix`, the full
S-PSP tensor for inspection.
"""
from hm2bp.functional.grad import LinearForward, hm2bp_backward
from hm2bp.functional.lif import lif_simulate
from hm2bp.functional.params import CONVENTIONS, HM2BPRule, LIFParams, PSPKernel
from hm2bp.functional.psp import exp_trace, free_psp, psp_traces
from hm2bp.functional.reference import materialise, reset_coefficients, spsp_factors, spsp_matrix
from hm2bp.functional.rule import inject_target, lateral_factor, regulariser_grad

spsp = spsp_matrix  # the name the README and older code use

__all__ = [
    "CONVENTIONS",
    "HM2BPRule",
    "LIFParams",
    "LinearForward",
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
    "spsp_matrix",
]
