"""MNIST (LeCun et al.) as Bernoulli spike trains: 784 inputs, T = 400, p = x/(5.5*255).

The rate code is described in docs/algorithm.md, "Input encoding".

Layout (torchvision's, so existing downloads are found)::

    <data_dir>/MNIST/raw/train-images-idx3-ubyte[.gz]   train-labels-idx1-ubyte[.gz]
    <data_dir>/MNIST/raw/t10k-images-idx3-ubyte[.gz]    t10k-labels-idx1-ubyte[.gz]

Validation (``val_size`` samples) is carved from the 60,000 training images with a seeded
generator; the 10,000 test images are used only by ``test``.
"""
from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import numpy as np
import torch

from hm2bp.atomic import atomic_write
from hm2bp.checks import count_or_fraction, number
from hm2bp.datamodules.augment import random_distortion
from hm2bp.datamodules.base import IndexedTensorDataset, data_not_found, seeded_split
from hm2bp.datamodules.idx import read_idx
from hm2bp.datamodules.image import RateCodedImageDataModule
from hm2bp.errors import DataError, DataNotFoundError

MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")


def find_idx(raw_dir: Path, name: str) -> Path:
    """``raw_dir/name`` or ``raw_dir/name.gz``; a clear error naming the layout otherwise."""
    for candidate in (raw_dir / name, raw_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise data_not_found(f"{raw_dir / name}[.gz]",
                         f"torchvision's layout <data_dir>/{raw_dir.parent.name}/raw/ with the IDX files", download=True)


def download_file(url: str, dest: Path, md5: str) -> None:
    """Download ``url`` to ``dest`` atomically, verifying its md5 (nothing half-written is left)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(dest) as tmp, open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
        digest = hashlib.md5()
        while chunk := resp.read(1 << 20):
            out.write(chunk)
            digest.update(chunk)
        if digest.hexdigest() != md5:
            raise OSError(f"md5 mismatch for {url}: got {digest.hexdigest()}, expected {md5}")


class MNISTDataModule(RateCodedImageDataModule):
    """MNIST rate-coded as in the official program.

    Args:
        data_dir: folder holding ``MNIST/raw`` (default ``$HM2BP_DATA_DIR`` or ``./data``).
        val_size: training images held out for validation (seeded): a count, or a fraction in (0, 1);
            0 trains on every training image, without validation.
        download: fetch the four files (md5-checked) in ``prepare_data`` when they are missing.
        time_steps, rate_divisor, redraw_every_epoch, batch_size, num_workers, seed: see the base.
        augment: distort every training presentation on the batch's device (official spiking CNN;
            docs/algorithm.md, "Input encoding"; :func:`hm2bp.datamodules.augment.random_distortion`),
            keyed by ``(seed, index, epoch)``; validation and test images are never augmented.
        elastic_distortion, scale, rotation: its magnitudes (official: 3.4 px, 12 %, 12 degrees).
        pixel_order: ``"compact"`` reproduces the authors' MLP reader before its 2018-01-12 fix (see the base class).
        order: ``"swaps"`` reproduces the authors' partial shuffle (see the base class).
    """

    folder = "MNIST"
    files = {
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    num_classes = 10
    input_shape = (28, 28)

    def __init__(
        self,
        data_dir: str | None = None,
        val_size: int | float = 5000,
        download: bool = False,
        time_steps: int = 400,
        rate_divisor: float = 5.5,
        redraw_every_epoch: bool = False,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        augment: bool = False,
        elastic_distortion: float = 3.4,
        scale: float = 12.0,
        rotation: float = 12.0,
        pixel_order: str = "raster",
        order: str = "permutation",
    ) -> None:
        super().__init__(time_steps, rate_divisor, redraw_every_epoch, batch_size, num_workers, seed, pixel_order,
                         order)
        self.data_dir = data_dir  # resolved by the base class
        self.val_size = count_or_fraction("data.init_args.val_size", val_size, zero_ok=True)
        self.download = download
        for key, value in (("elastic_distortion", elastic_distortion), ("scale", scale), ("rotation", rotation)):
            number(f"data.init_args.{key}", value, low=0, hint="an augmentation magnitude (0 turns it off)")
        self.augment_train = augment  # (``augment`` is the hook method of the base class)
        self.augment_magnitudes = dict(elastic=elastic_distortion, scale=scale, rotation=rotation)
        self._batch_index = None

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / self.folder / "raw"

    def prepare_data(self) -> None:
        missing = [n for n in self.files if not (self.raw_dir / n).is_file() and not (self.raw_dir / f"{n}.gz").is_file()]
        if not missing:
            return
        if not self.download:
            find_idx(self.raw_dir, missing[0])  # raises the clear error
        for name in missing:
            errors = []
            for mirror in MIRRORS:
                try:
                    download_file(mirror + name + ".gz", self.raw_dir / f"{name}.gz", self.files[name])
                    break
                except OSError as err:
                    errors.append(f"{mirror}: {err}")
            else:
                raise DataNotFoundError(f"could not download {name}.gz: " + "; ".join(errors))

    def load_split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        prefix = "train" if train else "t10k"
        images = read_idx(find_idx(self.raw_dir, f"{prefix}-images-idx3-ubyte"), expected_ndim=3)
        label_file = find_idx(self.raw_dir, f"{prefix}-labels-idx1-ubyte")
        labels = read_idx(label_file, expected_ndim=1)
        if len(images) != len(labels):
            raise DataError(f"{self.raw_dir}: {len(images)} {prefix} images but {len(labels)} labels; re-download them")
        if labels.size and int(labels.max()) >= self.num_classes:
            raise DataError(
                f"{label_file}: label {int(labels.max())} outside 0..{self.num_classes - 1}; the file is corrupt, "
                "re-download it"
            )
        return images, labels

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            x, y = self.load_split(train=True)
            x, y = torch.from_numpy(np.array(x)), torch.from_numpy(y.astype(np.int64))
            tr, va = seeded_split(len(x), self.val_size, self.seed, where=str(self.raw_dir))
            self.train_set = IndexedTensorDataset(x, y, tr)
            self.val_set = IndexedTensorDataset(x, y, va)
        if stage in (None, "test", "predict") and self.test_set is None:
            x, y = self.load_split(train=False)
            self.test_set = IndexedTensorDataset(torch.from_numpy(np.array(x)), torch.from_numpy(y.astype(np.int64)))

    def to_spikes(self, batch, stage: str):
        self._batch_index = batch[2]  # the augmentation is keyed by (seed, index, epoch)
        return super().to_spikes(batch, stage)

    def augment(self, images, stage: str):
        """Official CNN augmentation of uint8 images ``[B, H, W]``, training batches only."""
        if stage != "train" or not self.augment_train or self._batch_index is None:
            return images
        return random_distortion(images, index=self._batch_index, epoch=self.current_epoch(), seed=self.seed,
                                 **self.augment_magnitudes)
