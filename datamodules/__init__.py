"""LightningDataModules that deliver ``(spikes [T, B, *in] uint8, labels [B] int64)`` batches."""
from hm2bp.datamodules.base import SpikeDataModule, resolve_data_dir
from hm2bp.datamodules.digits import DigitsDataModule
from hm2bp.datamodules.mnist import MNISTDataModule

__all__ = ["DigitsDataModule", "MNISTDataModule", "SpikeDataModule", "resolve_data_dir"]
from hm2bp.datamodules.emnist import EMNISTDataModule
from hm2bp.datamodules.nmnist import NMNISTDataModule
from hm2bp.datamodules.ti46 import TI46DataModule
from hm2bp.datamodules.wavfolder import FSDDDataModule, WavFolderDataModule

__all__ += ["EMNISTDataModule", "FSDDDataModule", "NMNISTDataModule", "TI46DataModule", "WavFolderDataModule"]
