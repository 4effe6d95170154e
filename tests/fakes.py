"""Tiny generated datasets for the CLI tests: MNIST-layout IDX files and an N-MNIST folder."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed uint8 IDX file (magic 0x0000080<ndim>)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def fake_mnist(root: Path, n_train: int = 48, n_test: int = 16, test_labels: np.ndarray | None = None) -> Path:
    """``<root>/MNIST/raw`` with random 28x28 images and labels 0..9 (``test_labels`` overrides)."""
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        labels = np.arange(n) % 10 if prefix == "train" or test_labels is None else test_labels
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.asarray(labels, dtype=np.uint8))
    return root


def nmnist_event_bytes(events) -> bytes:
    """(x, y, p, ts) tuples -> 40-bit N-MNIST records."""
    out = bytearray()
    for x, y, p, ts in events:
        out += bytes([x, y, (p << 7) | ((ts >> 16) & 0x7F), (ts >> 8) & 0xFF, ts & 0xFF])
    return bytes(out)


def fake_nmnist(root: Path, n_per_class: int = 2, classes=(0, 1), splits=("Train", "Test")) -> Path:
    """``<root>/NMNIST/{Train,Test}/<digit>/<k>.bin``, one event per file."""
    for split in splits:
        for d in classes:
            folder = root / "NMNIST" / split / str(d)
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n_per_class):
                (folder / f"{k:05d}.bin").write_bytes(nmnist_event_bytes([(10 + d, 12, k % 2, 1000 * (k + 1))]))
    return root
