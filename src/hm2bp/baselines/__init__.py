"""Baseline learning rules (surrogate-gradient BPTT) on the same LIF layers, for comparison.

``BPTTNetwork`` is a drop-in replacement for ``hm2bp.SpikingNetwork`` (FC specs) in
``hm2bp.SpikingClassifier``; see ``configs/experiment/digits_bptt.yaml``.
"""
from hm2bp.baselines.bptt import BPTTLinear, BPTTNetwork, surrogate_lif

__all__ = ["BPTTLinear", "BPTTNetwork", "surrogate_lif"]
