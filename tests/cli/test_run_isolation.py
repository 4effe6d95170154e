"""No shipped config pins a checkpoint folder: every run keeps its checkpoints in its own run folder,
so a second fresh run of the same experiment is never refused for another run's checkpoints."""
from __future__ import annotations

import pytest
import yaml

from tests.helpers.paths import REPO

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def _dirpaths(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "dirpath":
                yield value
            yield from _dirpaths(value)
    elif isinstance(node, list):
        for value in node:
            yield from _dirpaths(value)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_no_config_pins_a_checkpoint_folder(path):
    assert list(_dirpaths(yaml.safe_load(path.read_text()))) == [], f"{path}: drop dirpath (runs share that folder)"
