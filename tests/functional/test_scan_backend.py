"""Choosing the scan backend (``scan_backend.py``): eager on the CPU, Triton optional."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from hm2bp.errors import ConfigError
from hm2bp.functional import LIFParams
from hm2bp.functional.lif import LIFScan
from hm2bp.functional.scan_backend import triton_importable, use_triton
from hm2bp.network import SpikingNetwork


def test_the_record_checks_and_passes_on_the_backend():
    with pytest.raises(ConfigError, match="scan_backend"):
        LIFParams(1.0, scan_backend="cuda")
    neuron = LIFParams(1.0, psp="official", scan_backend="eager")
    assert neuron.psp_kernel.scan_backend == "eager"
    net = SpikingNetwork("20-6-3", [2.0, 2.0], scan_backend="eager")
    assert all(layer.neuron.scan_backend == "eager" for layer in net.layers.values())
    assert "scan_backend" not in net.init_kwargs  # a run-time choice, not stored


def test_auto_is_eager_on_cpu_tensors(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x = torch.zeros(3)
    assert not use_triton("auto", x) and not use_triton("eager", x)
    assert not LIFScan(torch.zeros(5, 3, dtype=torch.bool), LIFParams(1.0)).fused
    with pytest.raises((ValueError, RuntimeError), match="triton"):
        use_triton("triton", x)  # CPU tensors outside the interpreter (or no triton at all)
    if triton_importable():
        with pytest.raises(ValueError, match="float32"):
            use_triton("triton", x.double())


def test_the_package_runs_without_triton():
    """With ``import triton`` failing, hm2bp imports and simulates; only a forced 'triton' fails."""
    code = textwrap.dedent("""
        import sys
        sys.modules["triton"] = None  # import triton raises ImportError
        import torch
        from hm2bp.functional import LIFParams, lif_simulate
        from hm2bp.functional.scan_backend import triton_importable, use_triton
        assert not triton_importable()
        s = lif_simulate(torch.full((20, 2, 3), 5.0), LIFParams(1.0))
        assert s.any()
        try:
            use_triton("triton", torch.zeros(1))
        except RuntimeError as e:
            assert "pip install triton" in str(e)
        else:
            raise AssertionError("forced triton without triton must fail")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
