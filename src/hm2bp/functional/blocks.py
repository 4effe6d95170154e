"""Blocks of samples: how many samples one block of a backward holds under a memory budget.

Every backward (fully connected, conv, pooling) forms its per-sample work tensors for a block of
samples at a time, so its working memory is a fixed budget whatever ``T`` and ``B`` (only the
number of blocks grows). Shared by :mod:`hm2bp.functional.grad`, :mod:`~hm2bp.functional.conv_grad`,
:mod:`~hm2bp.functional.conv_input_trace` and :mod:`~hm2bp.functional.conv_time_gemm`.
"""
from __future__ import annotations


def sample_group(B: int, per_sample_floats: int, item: int, budget: int, group: int | None = None) -> int:
    """Samples per block: ``group`` if given (clamped to ``[1, B]``), else as many samples of
    ``per_sample_floats`` floats of ``item`` bytes as ``budget`` bytes hold (at least 1)."""
    if group is not None:
        return max(1, min(B, int(group)))
    return max(1, min(B, budget // max(1, per_sample_floats * item)))
