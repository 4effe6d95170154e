"""Spiking layers, each an ``nn.Module`` backed by an HM2-BP ``torch.autograd.Function``."""
from hm2bp.layers.conv import SpikingConv2d, SpikingPool2d
from hm2bp.layers.linear import SpikingLinear

__all__ = ["SpikingConv2d", "SpikingLinear", "SpikingPool2d"]
