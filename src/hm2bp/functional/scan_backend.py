"""Which implementation runs the per-time-step scans: the LIF forward (``lif.LIFScan``), the
backward's adjoint trace (``spsp.adjoint_trace``) and the PSP traces (``psp.psp_traces``).

``"eager"`` steps the scans with one or a few PyTorch kernels per time step: the CPU path and the
reference. ``"triton"`` runs each scan as one fused Triton kernel over all its steps
(``triton_lif``, ``triton_traces``); Triton is optional and imported only there. ``"auto"`` (the
default) takes Triton for float32 CUDA tensors when it is importable, eager otherwise. The choice is
the neuron record's ``scan_backend`` (``LIFParams``, passed on to its ``PSPKernel``); both backends
give the same spikes, and traces equal up to float rounding (docs/benchmarks.md, "Fused scans").
"""
from __future__ import annotations

import os
from functools import lru_cache

import torch
from torch import Tensor

SCAN_BACKENDS = ("auto", "eager", "triton")


@lru_cache(maxsize=1)
def triton_importable() -> bool:
    """Whether ``triton`` imports (checked once)."""
    try:
        import triton  # noqa: F401
    except Exception:  # ImportError, or a broken install: the eager path serves
        return False
    return True


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(backend: str, *tensors: Tensor) -> bool:
    """Whether the scan over ``tensors`` runs as a Triton kernel under ``backend``.

    ``"auto"``: float32 CUDA tensors and Triton importable. ``"triton"`` forces it and raises when
    it cannot run: Triton missing, not float32, or CPU tensors outside the interpreter
    (``TRITON_INTERPRET=1``, which runs the kernels on CPU tensors for the tests).
    """
    if backend == "eager":
        return False
    floats = all(t.dtype == torch.float32 for t in tensors if t.is_floating_point())
    if backend == "auto":
        return floats and all(t.is_cuda for t in tensors) and triton_importable()
    if backend != "triton":
        raise ValueError(f"scan_backend must be one of {list(SCAN_BACKENDS)}, got {backend!r}")
    if not triton_importable():
        raise RuntimeError("scan_backend='triton' needs the optional package triton (pip install triton)")
    if not floats:
        raise ValueError("scan_backend='triton': the fused scans are float32 only; use 'eager' or 'auto'")
    if not (all(t.is_cuda for t in tensors) or _interpreted()):
        raise ValueError("scan_backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU)")
    return True
