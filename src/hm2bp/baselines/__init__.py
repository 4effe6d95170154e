"""Baseline learning rules (surrogate-gradient BPTT) on the same LIF layers, for comparison.

``BPTTNetwork`` is a drop-in replacement for ``hm2bp.SpikingNetwork`` (FC and conv specs) in
``hm2bp.SpikingClassifier``; see ``configs/experiment/digits_bptt.yaml``.
"""
from hm2bp.baselines.bptt import BPTTLinear, BPTTNetwork
from hm2bp.baselines.bptt_conv import BPTTConv2d, BPTTPool2d
from hm2bp.baselines.surrogate import surrogate_lif

__all__ = ["BPTTConv2d", "BPTTLinear", "BPTTNetwork", "BPTTPool2d", "surrogate_lif"]
