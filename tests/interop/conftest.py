"""A small digits network trained with HM2-BP (refractory 0) for the interoperability tests."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from hm2bp import SpikeCountLoss, SpikingClassifier
from hm2bp.datamodules import DigitsDataModule
from tests.helpers.digits import digits_network

T = 100


@pytest.fixture(scope="module")
def trained_digits_state() -> dict:
    """State dict of a 64-100-10 digits network after 2 epochs of HM2-BP at T = 100, refractory 0."""
    pl.seed_everything(0, verbose=False)
    model = SpikingClassifier(digits_network(), loss=SpikeCountLoss(8.75, 1.25, 1.25))  # Adam at lr 5e-3 (the default)
    dm = DigitsDataModule(time_steps=T, batch_size=32)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    return {k: v.clone() for k, v in model.network.state_dict().items()}


@pytest.fixture
def digits_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Real inputs: 64 held-out digits as the datamodule's test spike trains ``[T, 64, 8, 8]``, labels."""
    dm = DigitsDataModule(time_steps=T, batch_size=64)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    return dm.on_after_batch_transfer(batch, 0)[:2]
