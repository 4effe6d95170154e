"""N-MNIST (Orchard et al. 2015) as the official program's 2312-channel spike trains, spec §4.2.

Layout (tonic's, i.e. the official ``Train.zip``/``Test.zip`` extracted; partial folders work)::

    <data_dir>/NMNIST/Train/<digit>/<nnnnn>.bin
    <data_dir>/NMNIST/Test/<digit>/<nnnnn>.bin

Each ``.bin`` holds 40-bit events (x, y, polarity bit, 23-bit µs timestamp), read with
``tonic.io.read_mnist_file``. Encoding (:func:`~hm2bp.datamodules.events.nmnist_channels_and_steps`):
saccade stabilisation (Orchard's ``stabilize.m``), 600 µs bins at step ``ceil(ts/600) + 1``,
channel ``x*34 + y`` (+1156 for the second polarity), duplicates collapsed, steps ``>= T`` (540)
dropped. Encoded samples are cached on disk (``cache_dir``), keyed by the encoding parameters.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from hm2bp.checks import number
from hm2bp.datamodules.base import resolve_data_dir
from hm2bp.datamodules.events import NMNIST_SIZE, SpikeListDataModule, nmnist_channels_and_steps
from hm2bp.errors import DataError, DataNotFoundError


class NMNISTFormatError(DataError):
    """An N-MNIST ``.bin`` file is truncated or not in the 40-bit event format."""


def read_nmnist_bin(path: Path) -> np.ndarray:
    """Events of one N-MNIST ``.bin`` file (tonic's structured dtype: x, y, t, p), with a clear error."""
    import tonic

    data = Path(path).read_bytes()
    if len(data) % 5:
        raise NMNISTFormatError(
            f"{path}: {len(data)} bytes is not a multiple of 5 (N-MNIST events are 40 bits); "
            "the file is truncated or corrupt: re-extract it from the official zip"
        )
    events = tonic.io.read_mnist_file(io.BytesIO(data), dtype=tonic.datasets.NMNIST.dtype, is_stream=True)
    if len(events) and (events["x"].max() >= NMNIST_SIZE or events["y"].max() >= NMNIST_SIZE):
        raise NMNISTFormatError(f"{path}: pixel address outside the 34x34 sensor; not an N-MNIST file?")
    return events


class NMNISTDataModule(SpikeListDataModule):
    """N-MNIST, 2312 inputs (34·34 pixels × 2 polarities), 10 classes, T = 540 × 600 µs.

    Args:
        data_dir: folder holding ``NMNIST/Train`` and ``NMNIST/Test`` (default ``$HM2BP_DATA_DIR`` or ``./data``).
        time_steps: T (official 540).
        bin_us: bin width in µs (official 600).
        stabilize: subtract the saccade ego-motion first (official: yes).
        val_size: training samples held out for validation (count, or fraction in (0, 1); the official
            5000 needs the full 60,000 training files, a fraction such as 0.1 fits a partial folder).
        cache_dir: where encoded samples are cached (default ``$HM2BP_CACHE_DIR`` or ``~/.cache/hm2bp``).
        batch_size, num_workers, seed: see ``SpikeDataModule``.
    """

    num_classes = 10
    input_shape = (2 * NMNIST_SIZE * NMNIST_SIZE,)  # 2312: channel order of the official MLP
    cache_name = "nmnist"

    def __init__(
        self,
        data_dir: str | None = None,
        time_steps: int = 540,
        bin_us: float = 600.0,
        stabilize: bool = True,
        val_size: int | float = 5000,
        cache_dir: str | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(time_steps, val_size, cache_dir, batch_size, num_workers, seed)
        self.data_dir = resolve_data_dir(data_dir)
        self.bin_us = float(number("data.init_args.bin_us", bin_us, low=0, low_open=True))
        self.stabilize = stabilize

    def source_root(self) -> Path:
        return self.data_dir / "NMNIST"

    def source_files(self, split: str) -> list[tuple[Path, int]]:
        folder = self.source_root() / ("Train" if split == "train" else "Test")
        if not folder.is_dir():
            raise DataNotFoundError(
                f"N-MNIST folder {folder} not found. Expected tonic's layout "
                f"<data_dir>/NMNIST/{{Train,Test}}/<digit>/*.bin (the official Train.zip/Test.zip extracted); "
                "pass data.data_dir or set $HM2BP_DATA_DIR"
            )
        files = []
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            if not sub.name.isdigit():
                raise DataError(f"{sub}: N-MNIST class folders must be named by digit (0..9)")
            files += [(f, int(sub.name)) for f in sorted(sub.glob("*.bin"))]
        if not files:
            raise DataNotFoundError(f"no .bin files under {folder}/<digit>/")
        return files

    def cache_params(self) -> dict:
        return {"format": "nmnist-2312", "bin_us": self.bin_us, "stabilize": self.stabilize}

    def encode_file(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return nmnist_channels_and_steps(read_nmnist_bin(path), stabilize=self.stabilize, bin_us=self.bin_us)
