"""hm2bp: deep spiking neural networks trained with HM2-BP (Jin, Zhang & Li, NeurIPS 2018).

The tensor API (:class:`SpikingNetwork`, the layers, :class:`SpikeCountLoss`, :mod:`hm2bp.functional`)
loads with ``import hm2bp``. The Lightning side (:class:`SpikingClassifier`, :func:`load`) loads on
first use, so ``import hm2bp`` does not import pytorch_lightning.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from hm2bp import functional
from hm2bp.boosting import SampleBoosting
from hm2bp.functional import spsp
from hm2bp.layers import SpikingConv2d, SpikingLinear, SpikingPool2d
from hm2bp.loss import SpikeCountLoss
from hm2bp.network import SpikingNetwork

if TYPE_CHECKING:
    from hm2bp.loading import load
    from hm2bp.module import SpikingClassifier

__version__ = "0.1.0"
__all__ = ["SampleBoosting", "SpikeCountLoss", "SpikingClassifier", "SpikingConv2d", "SpikingLinear", "SpikingNetwork",
           "SpikingPool2d", "functional", "load", "spsp"]

_LAZY = {"SpikingClassifier": "hm2bp.module", "load": "hm2bp.loading"}  # names that import pytorch_lightning


def __getattr__(name: str):
    """Import the Lightning-based names on first access (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'hm2bp' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
