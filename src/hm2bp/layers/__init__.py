"""Spiking layers, each an ``nn.Module`` backed by an HM2-BP ``torch.autograd.Function``."""
from hm2bp.layers.linear import SpikingLinear

__all__ = ["SpikingLinear"]
