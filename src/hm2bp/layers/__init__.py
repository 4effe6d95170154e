"""Spiking layers, each an ``nn.Module`` backed by an HM2-BP ``torch.autograd.Function``; they hand
each other :class:`Spikes`."""
from hm2bp.layers.conv import SpikingConv2d
from hm2bp.layers.linear import SpikingLinear
from hm2bp.layers.pool import SpikingPool2d
from hm2bp.layers.spikes import Spikes

__all__ = ["SpikingConv2d", "SpikingLinear", "SpikingPool2d", "Spikes"]
