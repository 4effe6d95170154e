"""``hm2bp.allocator.keep_freed_memory``: freed multi-MB blocks are reused instead of being
unmapped and faulted in again (measured as minor page faults in a fresh process), and the CLI
option that selects it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from hm2bp.cli import cli_main
from tests.helpers import REPO

PROBE = """
import resource, sys, torch
from hm2bp.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def step():  # the pattern of a training step: several 8 MiB block buffers alive together, then freed
    blocks = [torch.ones(2 * 1024 * 1024) for _ in range(6)]
    del blocks
step()  # warm-up: the first step faults its pages in under either setting
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt: Linux only")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    pages = 6 * 2048  # 4 kB pages per step (six 8 MiB blocks)
    system, keep = _faults("system"), _faults("keep")
    assert system > 5 * pages  # glibc trimmed the freed blocks: the 10 later steps fault them in anew
    assert keep < pages / 2  # the freed blocks are reused: hardly a new page


def test_cli_allocator_option_is_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    digits = str(REPO / "configs/experiment/digits.yaml")
    with pytest.raises(Exception, match="allocator.*invalid choice: 'jemalloc'"):
        cli_main(["--config", digits, "--allocator", "jemalloc"], run=False)
    assert cli_main(["--config", digits], run=False).config.allocator == "keep"  # the default
    assert cli_main(["--config", digits, "--allocator", "system"], run=False).config.allocator == "system"
