"""Keep freed memory in the process: glibc allocator settings for the training step's block buffers.

A training step allocates and frees many multi-MB tensors (per-block currents, traces, gathered
rows). glibc serves every allocation above its mmap threshold (dynamic, at most 32 MiB) with a
fresh ``mmap`` and returns it with ``munmap`` when freed, so the next step faults the same pages in
again, one minor page fault per 4 kB page, and it trims the heap top after frees. For the paper
CNN at batch 16 this kernel time was about a quarter of the step (``docs/benchmarks.md``,
"Allocator"). :func:`keep_freed_memory` raises the mmap threshold to glibc's maximum, keeps up to
``trim`` bytes of freed heap and pads heap growth, so freed blocks are reused by the next step
instead. The price: the process keeps its peak heap (the step's fixed memory budget) instead of
returning it between steps.

This is a process-wide setting, so only entry points call it: the ``hm2bp`` CLI (``--allocator
keep``, its default) and the benchmark scripts. Library code never does.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc <malloc.h>)
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit systems
TRIM_THRESHOLD = 1024 * 1024 * 1024  # keep up to 1 GiB of freed memory at the heap top
TOP_PAD = 256 * 1024 * 1024  # grow the heap in steps of at least 256 MiB


def keep_freed_memory() -> bool:
    """Apply the settings above through glibc's ``mallopt``; ``True`` when all were accepted.

    A no-op returning ``False`` where there is no glibc ``mallopt`` (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)
