"""Shared fixtures: offline W&B in a temp dir, the shared real-data folder, float64 helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

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
