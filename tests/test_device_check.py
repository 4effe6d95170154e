"""CPU against CUDA: the same spikes and gradients for a small MLP and CNN (``benchmarks/device_check.py``).

The GPU test runs the script's comparison on ``cuda`` (skipped without a GPU); the CPU test runs
the same comparison CPU against CPU, so the check itself is exercised on every machine.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.py"


def _device_check():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_spikes_and_gradients_equal_cpu():
    reports = _device_check().check(torch.device("cuda"), rtol=1e-9, T=120)
    for report in reports:
        assert all(v == 0 for v in report["spike_mismatches"].values()), report
        assert report["ok"], report


def test_device_check_runs_on_cpu():
    reports = _device_check().check(torch.device("cpu"), rtol=1e-12, T=60)
    assert [r["net"] for r in reports] == ["mlp 100-60-10"] + [
        f"cnn 12x12-4C3-P2-30-10 path={path}" for path in ("output", "input", "gemm")]
    for report in reports:
        assert report["ok"], report
