"""Baseline learning rules (surrogate-gradient BPTT) on the same LIF layers, for comparison."""
