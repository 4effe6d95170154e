"""N-MNIST (Orchard et al. 2015) as the official program's 2312-channel spike trains.

The encoding is described in docs/datasets.md, "N-MNIST".

Layout (tonic's, i.e. the official ``Train.zip``/``Test.zip`` extracted; partial folders work)::

    <data_dir>/NMNIST/Train/<digit>/<nnnnn>.bin
    <data_dir>/NMNIST/Test/<digit>/<nnnnn>.bin

Each ``.bin`` holds 40-bit events (x, y, polarity bit, 23-bit µs timestamp), read with
``tonic.io.read_mnist_file``. Encoding (:func:`nmnist_channels_and_steps`):
saccade stabilisation (Orchard's ``stabilize.m``), 600 µs bins at step ``ceil(ts/600) + 1``,
channel ``x*34 + y`` (+1156 for the second polarity), duplicates collapsed, steps ``>= T`` (540)
dropped. Encoded samples are cached on disk (``cache_dir``), keyed by the encoding parameters.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from hm2bp.checks import number
from hm2bp.datamodules.spikelists import SpikeListDataModule, unique_pairs
from hm2bp.errors import DataError, DataNotFoundError

# --------------------------------------------------------------------------------------------
# N-MNIST: Orchard's saccade stabilisation and the official 600 us binning (docs/datasets.md, "N-MNIST")
# --------------------------------------------------------------------------------------------

NMNIST_SIZE = 34  # sensor is 34 x 34
SACCADE_US = 105e3  # each of the three saccades lasts 105 ms


def _matlab_round(v: np.ndarray) -> np.ndarray:
    """MATLAB ``round``: halves away from zero (numpy rounds halves to even)."""
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def stabilize_saccades(x1: np.ndarray, y1: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subtract the sensor ego-motion of the three N-MNIST saccades (Orchard's ``stabilize.m``).

    ``x1``, ``y1``: 1-based pixel addresses; ``ts``: microseconds. The motion is piecewise linear:
    saccade 1 (``ts <= 105 ms``) moves by ``(3.5, 7)`` px, saccade 2 by ``(3.5, -7)``, saccade 3
    by ``(-7, 0)``; the shifted addresses are rounded (MATLAB ``round``). Returns the stabilised
    ``(x, y)`` (float, integral values) and a keep mask: ``stabilize.m`` drops ``x < 1 | y < 1`` and
    ``NMNIST_Converter.m`` drops ``x > 34 | y > 34``, so only the 34 x 34 field survives.
    """
    x = x1.astype(np.float64)
    y = y1.astype(np.float64)
    t = ts.astype(np.float64)
    s1 = t <= SACCADE_US
    s2 = (t > SACCADE_US) & (t <= 2 * SACCADE_US)
    s3 = t > 2 * SACCADE_US
    x[s1] -= 3.5 * t[s1] / SACCADE_US
    y[s1] -= 7.0 * t[s1] / SACCADE_US
    x[s2] -= 3.5 + 3.5 * (t[s2] - SACCADE_US) / SACCADE_US
    y[s2] -= 7.0 - 7.0 * (t[s2] - SACCADE_US) / SACCADE_US
    x[s3] -= 7.0 - 7.0 * (t[s3] - 2 * SACCADE_US) / SACCADE_US
    x, y = _matlab_round(x), _matlab_round(y)
    keep = (x >= 1) & (y >= 1) & (x <= NMNIST_SIZE) & (y <= NMNIST_SIZE)
    return x, y, keep


def nmnist_channels_and_steps(
    events: np.ndarray,
    *,
    stabilize: bool = True,
    bin_us: float = 600.0,
    two_polarities: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """N-MNIST events (tonic dtype ``x, y, t, p``; x, y 0-based) -> unique ``(channel, step)`` pairs.

    Official conversion (docs/datasets.md, "N-MNIST"; ``NMNIST_Converter.m`` + ``readNMnistData.cpp``):

    * 1-based ``x1 = x + 1``, ``y1 = y + 1``; saccade stabilisation (:func:`stabilize_saccades`);
    * channel ``(x1 - 1) * 34 + y1`` 1-based, i.e. ``x * 34 + y`` 0-based (x-major); events whose
      polarity bit is set (Orchard's ``p = 2``, tonic's ``p = 1``) add ``34 * 34 = 1156``;
    * step ``ceil(ts / bin_us) + 1`` (the converter writes ``ceil(ts/600)``, the C++ reader adds 1);
    * several events of one channel in one bin collapse to a single spike.

    Returns int64 arrays sorted by channel, then step. Steps are not capped here (see ``T``).
    """
    x1 = events["x"].astype(np.int64) + 1
    y1 = events["y"].astype(np.int64) + 1
    ts = events["t"].astype(np.int64)
    if stabilize:
        xs, ys, keep = stabilize_saccades(x1, y1, ts)
        x1, y1, ts = xs[keep].astype(np.int64), ys[keep].astype(np.int64), ts[keep]
        pol = events["p"][keep].astype(np.int64)
    else:
        keep = (x1 >= 1) & (y1 >= 1) & (x1 <= NMNIST_SIZE) & (y1 <= NMNIST_SIZE)
        x1, y1, ts, pol = x1[keep], y1[keep], ts[keep], events["p"][keep].astype(np.int64)
    channel = (x1 - 1) * NMNIST_SIZE + (y1 - 1)  # 0-based
    if two_polarities:
        channel = channel + (pol != 0) * (NMNIST_SIZE * NMNIST_SIZE)
    step = np.ceil(ts / float(bin_us)).astype(np.int64) + 1
    return unique_pairs(channel, step)


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
        self.data_dir = data_dir  # resolved by the base class
        self.bin_us = float(number("data.init_args.bin_us", bin_us, low=0, low_open=True))
        self.stabilize = stabilize

    def source_root(self) -> Path:
        return self.data_dir / "NMNIST"

    def source_files(self, split: str) -> list[tuple[Path, int]]:
        folder = self.source_root() / ("Train" if split == "train" else "Test")
        if not folder.is_dir():
            raise self.missing_data(f"N-MNIST folder {folder}", "tonic's layout <data_dir>/NMNIST/{Train,Test}/<digit>/*.bin "
                                    "(the official Train.zip/Test.zip extracted)")
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
