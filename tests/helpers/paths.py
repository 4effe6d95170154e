"""Paths of the repository and of the experiment configs the tests run."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "configs" / "experiment" / "digits.yaml"
MNIST = REPO / "configs/experiment/mnist_mlp.yaml"
NMNIST = REPO / "configs/experiment/nmnist_mlp.yaml"
