"""The digits model ("boring SNN"), data and trainer of the callback tests, and the interop network."""
from __future__ import annotations

import pytorch_lightning as pl

from hm2bp import SpikeCountLoss, SpikingClassifier, SpikingNetwork
from hm2bp.datamodules import DigitsDataModule

T_DIGITS = 100


def digits_model(thresholds=(10.0, 8.0), seed: int = 0) -> SpikingClassifier:
    pl.seed_everything(seed, verbose=False)
    net = SpikingNetwork(
        "64-100-10", thresholds=list(thresholds), output_lateral_inhibition=1.0, target_injection=17.5
    )
    return SpikingClassifier(net, SpikeCountLoss(17.5, 2.5, 2.5))  # Adam at lr 5e-3 (the default)


def digits_data(batch_size: int = 16, **kwargs) -> DigitsDataModule:
    return DigitsDataModule(time_steps=T_DIGITS, batch_size=batch_size, **kwargs)


def tiny_trainer(tmp_path, callbacks, logger=False, **kwargs) -> pl.Trainer:
    opts = dict(
        accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=4, limit_val_batches=2,
        log_every_n_steps=2, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=str(tmp_path),
    )
    opts.update(kwargs)
    return pl.Trainer(logger=logger, callbacks=callbacks, **opts)


def digits_network(refractory: int = 0, lateral: float = 0.0) -> SpikingNetwork:
    return SpikingNetwork("64-100-10", [10, 8], refractory=refractory, output_lateral_inhibition=lateral,
                          target_injection=8.75)
