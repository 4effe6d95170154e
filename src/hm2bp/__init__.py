"""hm2bp: deep spiking neural networks trained with HM2-BP (Jin, Zhang & Li, NeurIPS 2018)."""
from hm2bp import functional
from hm2bp.boosting import SampleBoosting
from hm2bp.functional import spsp
from hm2bp.layers import SpikingConv2d, SpikingLinear, SpikingPool2d
from hm2bp.loss import SpikeCountLoss
from hm2bp.module import SpikingClassifier
from hm2bp.network import SpikingNetwork

__version__ = "0.1.0"
__all__ = ["SampleBoosting", "SpikeCountLoss", "SpikingClassifier", "SpikingConv2d", "SpikingLinear", "SpikingNetwork", "SpikingPool2d", "functional", "spsp"]
