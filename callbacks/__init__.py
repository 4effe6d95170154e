"""Lightning callbacks of hm2bp (spike observability): firing-rate statistics and spike rasters."""
from hm2bp.callbacks.firing_rates import FiringRateMonitor, SilentNetworkWarning
from hm2bp.callbacks.spike_raster import SpikeRasterLogger

__all__ = ["FiringRateMonitor", "SilentNetworkWarning", "SpikeRasterLogger"]
