"""Lightning callbacks of hm2bp: firing-rate statistics, spike rasters and per-epoch learning curves."""
from hm2bp.callbacks.epoch_curve import EpochCurve
from hm2bp.callbacks.firing_rates import FiringRateMonitor, SilentNetworkWarning
from hm2bp.callbacks.spike_raster import SpikeRasterLogger

__all__ = ["EpochCurve", "FiringRateMonitor", "SilentNetworkWarning", "SpikeRasterLogger"]
