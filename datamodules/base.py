"""Shared pieces of every hm2bp datamodule.

Batch contract (what every datamodule hands to the model, after ``on_after_batch_transfer``):
``(spikes, labels)`` with ``spikes`` ``[T, B, *input_shape]`` ``uint8`` (0/1) and ``labels``
``[B]`` ``int64``. Each datamodule exposes ``num_inputs``, ``num_classes``, ``time_steps`` and
``input_shape``; the CLI links them into the model.

Data location: the ``data_dir`` argument, else ``$HM2BP_DATA_DIR``, else ``./data``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

ENV_DATA_DIR = "HM2BP_DATA_DIR"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir`` > ``$HM2BP_DATA_DIR`` > ``./data``."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env).expanduser() if env else Path("data")


class IndexedTensorDataset(Dataset):
    """``(x[i], y[i], i)``: the index lets encoders key their randomness by sample."""

    def __init__(self, x: Tensor, y: Tensor, indices: Tensor | None = None) -> None:
        self.x, self.y = x, y
        self.indices = indices if indices is not None else torch.arange(len(x))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = int(self.indices[k])
        return self.x[i], self.y[i], i


def seeded_split(n: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded permutation split of ``range(n)`` into ``(train_idx, val_idx)``."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}), got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


class SpikeDataModule(pl.LightningDataModule):
    """Base class: batch size checks, loaders and the (spikes, labels) batch contract.

    Args:
        batch_size: global batch size; under DDP each device gets ``batch_size / world_size``.
        num_workers: dataloader workers (results do not depend on it).
        seed: seed of the validation split and of every encoder.
    """

    num_classes: int
    input_shape: tuple[int, ...]

    def __init__(self, batch_size: int = 64, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"data.batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_set = self.val_set = self.test_set = None

    @property
    def num_inputs(self) -> int:
        n = 1
        for s in self.input_shape:
            n *= s
        return n

    @property
    def per_device_batch_size(self) -> int:
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world:
            raise ValueError(
                f"data.batch_size={self.batch_size} is not divisible by the world size {world} "
                f"(devices x nodes); choose a multiple of {world}"
            )
        return self.batch_size // world

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.per_device_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def current_epoch(self) -> int:
        return int(self.trainer.current_epoch) if self.trainer is not None else 0
