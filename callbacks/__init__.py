"""Lightning callbacks of hm2bp: spike observability (firing-rate statistics, spike rasters),
per-epoch learning curves, a learning-rate warm-up, a checkpoint on Ctrl-C, and the prediction file of ``hm2bp predict``;
and ``MetricsCSVLogger``, the logger that writes every run's ``metrics.csv`` whatever ``trainer.logger`` is."""
from hm2bp.callbacks.epoch_curve import EpochCurve
from hm2bp.callbacks.firing_rates import FiringRateMonitor, SilentNetworkWarning
from hm2bp.callbacks.interrupt import CheckpointOnInterrupt
from hm2bp.callbacks.lr_warmup import LearningRateWarmup
from hm2bp.callbacks.predictions import PredictionWriter
from hm2bp.callbacks.run_files import MetricsCSVLogger
from hm2bp.callbacks.spike_raster import SpikeRasterLogger

__all__ = [
    "CheckpointOnInterrupt", "EpochCurve", "FiringRateMonitor", "LearningRateWarmup", "MetricsCSVLogger", "PredictionWriter",
    "SilentNetworkWarning",
    "SpikeRasterLogger",
]
