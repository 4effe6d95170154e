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
