"""The embedded default datamodule (no download)."""
from __future__ import annotations

import torch

from hm2bp.datamodules import DigitsDataModule


def test_digits_splits_and_batches():
    dm = DigitsDataModule(time_steps=30, batch_size=16)
    dm.setup("fit")
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 1797
    assert len(dm.test_set) == 360 and len(dm.val_set) == 180
    splits = [set(s.indices.tolist()) for s in (dm.train_set, dm.val_set, dm.test_set)]
    assert not (splits[0] & splits[1]) and not (splits[0] & splits[2]) and not (splits[1] & splits[2])
    batch = next(iter(dm.train_dataloader()))
    spikes, y, _ = dm.on_after_batch_transfer(batch, 0)
    assert spikes.shape == (30, 16, 8, 8) and spikes.dtype == torch.uint8
    assert y.dtype == torch.int64 and 0 <= int(y.min()) and int(y.max()) <= 9
    assert dm.num_inputs == 64


def test_val_size_zero_trains_on_every_training_image():
    dm = DigitsDataModule(val_size=0, time_steps=30, batch_size=16)
    dm.setup("fit")
    assert len(dm.val_set) == 0 and len(dm.train_set) == 1797 - 360
    assert dm.val_dataloader() == []  # Lightning skips validation
    assert set(dm.train_set.indices.tolist()).isdisjoint(dm.test_set.indices.tolist())
    held_out = DigitsDataModule(val_size=180, time_steps=30, batch_size=16)
    held_out.setup("fit")
    assert torch.equal(held_out.test_set.indices, dm.test_set.indices)  # the test split does not move
