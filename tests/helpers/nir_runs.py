"""Comparing hm2bp's spikes with another simulator's run of the exported NIR graph, layer by layer."""
from __future__ import annotations

import torch

from hm2bp.nir import export_nir
from tests.helpers.digits import digits_network


def mismatches(a: dict, b: dict) -> dict:
    """``{layer: number of differing bins}`` between two ``{layer: spikes}`` dicts with the same layers."""
    assert a.keys() == b.keys()
    return {k: int((a[k].float() != b[k].float()).sum()) for k in a}


def forward_all(net, x) -> dict:
    """hm2bp's spikes of every layer of ``net`` on ``x``."""
    with torch.no_grad():
        return net(x, return_all=True)


def refractory_runs(run, state: dict, x) -> tuple[dict, dict]:
    """Run the refractory-2 digits network (weights ``state``) exported to NIR with ``run(graph, x)``;
    return its mismatches against hm2bp at refractory 0 and at refractory 2 (NIR drops the period)."""
    with_ref, without = digits_network(refractory=2), digits_network(refractory=0)
    with_ref.load_state_dict(state)
    without.load_state_dict(state)
    theirs = run(export_nir(with_ref), x)
    return mismatches(forward_all(without, x), theirs), mismatches(forward_all(with_ref, x), theirs)
