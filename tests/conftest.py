"""Shared fixtures: offline W&B in a temp dir, the shared real-data folder, float64 helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Without a GPU, Triton's kernels run in its interpreter (tests/functional/test_triton_scans.py). Triton
# reads TRITON_INTERPRET when it is first imported, and any test that runs a network may import it (the
# "auto" scan backend asks whether it is installed), so set it here, before any test runs.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tests.helpers.cli_runs import digits_fit_args, final_metrics, network_weights, run_cli, run_folder

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """Real datasets for tests: ``$HM2BP_TEST_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("HM2BP_TEST_DATA")
    return Path(env) if env else (REPO.parent / "shared" / "data")


@pytest.fixture
def shared_data() -> Path:
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"shared test data not found at {root} (set HM2BP_TEST_DATA)")
    return root


@pytest.fixture
def golden_dir(shared_data) -> Path:
    path = shared_data / "hm2bp-golden"
    if not path.is_dir():
        pytest.skip(f"golden data not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HM2BP_CACHE_DIR", str(tmp_path / "hm2bp-cache"))  # never ~/.cache in tests


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)  # the run-level setting: hm2bp's time scans never switch threads themselves


@pytest.fixture(scope="session")
def reference_record(tmp_path_factory) -> dict:
    """One uninterrupted single-process digits run through the CLI, made once per session (the DDP,
    resume and predict tests share it): its final metrics, network weights, global step and folder."""
    base = tmp_path_factory.mktemp("reference")
    run_cli(digits_fit_args(base), cwd=base)
    run = run_folder(base)
    last = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    return {"metrics": final_metrics(run), "weights": network_weights(last), "step": int(ckpt["global_step"]),
            "dir": run}


@pytest.fixture(scope="session")
def reference_run(reference_record) -> tuple:
    """``(final metrics, network weights, global step)`` of :func:`reference_record`."""
    return reference_record["metrics"], reference_record["weights"], reference_record["step"]
