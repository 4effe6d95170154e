"""EMNIST (Cohen et al. 2017) as Bernoulli spike trains, encoded like MNIST.

The rate code is described in docs/algorithm.md, "Input encoding".

Layout (torchvision's, so existing downloads are found)::

    <data_dir>/EMNIST/raw/emnist-<split>-train-images-idx3-ubyte[.gz]   ...-train-labels-idx1-ubyte[.gz]
    <data_dir>/EMNIST/raw/emnist-<split>-test-images-idx3-ubyte[.gz]    ...-test-labels-idx1-ubyte[.gz]
    <data_dir>/EMNIST/raw/emnist-<split>-mapping.txt                    label -> ASCII code(s)

The official IDX files store every image transposed; images are turned upright here (this
matters for convolutional nets, not for an MLP). The ``letters`` split's labels 1..26 become 0..25.
"""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np

from hm2bp.atomic import atomic_write
from hm2bp.datamodules.idx import read_idx
from hm2bp.datamodules.mnist import MNISTDataModule, download_file, find_idx
from hm2bp.errors import ConfigError, DataError, DataNotFoundError

# split -> number of classes (Cohen et al. 2017, Table II)
EMNIST_SPLITS = {"balanced": 47, "byclass": 62, "bymerge": 47, "digits": 10, "letters": 26, "mnist": 10}
# official archive (NIST), the source torchvision uses; md5 as published by torchvision
EMNIST_URL = "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"
EMNIST_MD5 = "58c8d27c78d21e728a6bc7b3cc06412e"


class EMNISTDataModule(MNISTDataModule):
    """EMNIST ``split`` (default ``balanced``: 47 classes, 112,800 train / 18,800 test images).

    Args:
        split: one of ``balanced``, ``byclass``, ``bymerge``, ``digits``, ``letters``, ``mnist``.
        data_dir: folder holding ``EMNIST/raw`` (default ``$HM2BP_DATA_DIR`` or ``./data``).
        val_size: training images held out for validation (seeded).
        download: fetch NIST's ``gzip.zip`` (535 MB, md5-checked) in ``prepare_data`` and extract the split.
        time_steps, rate_divisor, redraw_every_epoch, batch_size, num_workers, seed: see ``MNISTDataModule``.
    """

    folder = "EMNIST"
    input_shape = (28, 28)

    def __init__(
        self,
        split: str = "balanced",
        data_dir: str | None = None,
        val_size: int | float = 5000,
        download: bool = False,
        time_steps: int = 400,
        rate_divisor: float = 5.5,
        redraw_every_epoch: bool = False,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        if split not in EMNIST_SPLITS:
            raise ConfigError(f"data.init_args.split must be one of {sorted(EMNIST_SPLITS)}, got {split!r}")
        super().__init__(data_dir=data_dir, val_size=val_size, download=download, time_steps=time_steps,
                         rate_divisor=rate_divisor, redraw_every_epoch=redraw_every_epoch,
                         batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.split = split
        self.num_classes = EMNIST_SPLITS[split]
        self.files = {f"emnist-{split}-{part}": None for part in (
            "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "test-images-idx3-ubyte", "test-labels-idx1-ubyte")}

    @property
    def label_offset(self) -> int:
        return 1 if self.split == "letters" else 0  # letters: 1..26 in the files

    @property
    def class_names(self) -> list[str]:
        """Class names from ``emnist-<split>-mapping.txt`` (e.g. ``'0'..'9', 'A'..'Z', 'a', 'b', ...``)."""
        path = self.raw_dir / f"emnist-{self.split}-mapping.txt"
        if not path.is_file():
            raise DataNotFoundError(f"{path} not found (it ships with the official EMNIST files)")
        names = {}
        for n, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            try:
                label, codes = int(parts[0]) - self.label_offset, [int(c) for c in parts[1:]]
            except ValueError as err:
                raise DataError(f"{path}, line {n}: expected 'label ascii_code...', got {line!r}") from err
            names[label] = "/".join(chr(c) for c in codes)
        if sorted(names) != list(range(self.num_classes)):
            raise DataError(f"{path} maps labels {sorted(names)[:3]}..., expected 0..{self.num_classes - 1}")
        return [names[i] for i in range(self.num_classes)]

    def prepare_data(self) -> None:
        missing = [n for n in self.files if not (self.raw_dir / n).is_file() and not (self.raw_dir / f"{n}.gz").is_file()]
        if not missing:
            return
        if not self.download:
            find_idx(self.raw_dir, missing[0])  # raises the clear error
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        archive = self.raw_dir / "gzip.zip"
        if not archive.is_file():
            download_file(EMNIST_URL, archive, EMNIST_MD5)
        wanted = [f"gzip/{n}.gz" for n in missing] + [f"gzip/emnist-{self.split}-mapping.txt"]
        with zipfile.ZipFile(archive) as zf:
            for member in wanted:
                dest = self.raw_dir / Path(member).name
                with atomic_write(dest) as tmp, open(tmp, "wb") as out, zf.open(member) as src:
                    shutil.copyfileobj(src, out)

    def load_split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        part = "train" if train else "test"
        images = read_idx(find_idx(self.raw_dir, f"emnist-{self.split}-{part}-images-idx3-ubyte"), expected_ndim=3)
        label_file = find_idx(self.raw_dir, f"emnist-{self.split}-{part}-labels-idx1-ubyte")
        labels = read_idx(label_file, expected_ndim=1).astype(np.int64) - self.label_offset
        if len(images) != len(labels):
            raise DataError(f"{self.raw_dir}: {len(images)} {part} images but {len(labels)} labels; re-download them")
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
            raise DataError(
                f"{label_file}: label {bad + self.label_offset} outside the {self.split} split's range "
                f"{self.label_offset}..{self.num_classes - 1 + self.label_offset}; wrong split or corrupt file"
            )
        images = np.ascontiguousarray(images.transpose(0, 2, 1))  # [N, 28, 28]: stored transposed -> upright
        return images, labels
