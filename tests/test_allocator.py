"""``hm2bp.allocator.keep_freed_memory``: freed multi-MB blocks stay with the process for the next
step instead of being unmapped or trimmed (measured as resident memory in a fresh process; the page
fault counts of docs/benchmarks.md, "Allocator", depend on the kernel's huge pages), and the CLI
option that selects it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from hm2bp import allocator
from hm2bp.cli import cli_main
from tests.helpers.paths import REPO

PROBE = """
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("allocator", sys.argv[2])  # without importing torch and hm2bp
allocator = importlib.util.module_from_spec(spec)
spec.loader.exec_module(allocator)
if sys.argv[1] == "keep":
    assert allocator.keep_freed_memory()
def rss_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
def step():  # the pattern of a training step: several 8 MiB block buffers alive together, then freed
    blocks = [np.ones(2 * 1024 * 1024, np.float32) for _ in range(6)]
    del blocks
before = rss_mib()
for _ in range(3):
    step()
print(rss_mib() - before)
"""


def _held_after_steps(mode: str) -> float:
    """MiB of resident memory the process still holds after three steps' blocks were freed."""
    out = subprocess.run([sys.executable, "-c", PROBE, mode, allocator.__file__], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt and /proc: Linux only")
def test_freed_blocks_stay_with_the_process_for_the_next_step():
    """``keep`` holds the freed 48 MiB for reuse; glibc's defaults hand it back (unmapped or
    trimmed, so the next step faults it in again). The probe allocates through numpy in a process
    without torch: with torch loaded, glibc's defaults kept the blocks in about a third of fresh
    processes (the address layout decides), so the probe would not show the difference reliably."""
    assert all(_held_after_steps("keep") > 40 for _ in range(3))
    assert all(_held_after_steps("system") < 16 for _ in range(3))


def test_cli_allocator_option_is_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    digits = str(REPO / "configs/experiment/digits.yaml")
    with pytest.raises(Exception, match="allocator.*invalid choice: 'jemalloc'"):
        cli_main(["--config", digits, "--allocator", "jemalloc"], run=False)
    assert cli_main(["--config", digits], run=False).config.allocator == "keep"  # the default
    assert cli_main(["--config", digits, "--allocator", "system"], run=False).config.allocator == "system"
