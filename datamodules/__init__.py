"""LightningDataModules that deliver ``(spikes [T, B, *in] uint8, labels [B] int64)`` batches."""
from hm2bp.datamodules.base import SpikeDataModule, resolve_data_dir
from hm2bp.datamodules.digits import DigitsDataModule
from hm2bp.datamodules.mnist import MNISTDataModule

__all__ = ["DigitsDataModule", "MNISTDataModule", "SpikeDataModule", "resolve_data_dir"]
