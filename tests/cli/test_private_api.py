"""The private Lightning API that hm2bp.cli_private relies on still exists with the shape it expects."""
from __future__ import annotations

import inspect

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import WandbLogger

from hm2bp import cli_private


def test_overridden_and_called_methods_exist_with_their_signatures():
    expected = {"_parse_ckpt_path": ["self"], "_set_seed": ["self"], "_run_subcommand": ["self", "subcommand"],
                "_get": ["self", "config", "key", "default"]}
    assert set(expected) == set(cli_private.OVERRIDDEN + cli_private.READ)
    for name, params in expected.items():
        assert list(inspect.signature(getattr(LightningCLI, name)).parameters) == params, name


def test_init_calls_the_private_steps_in_the_order_the_hooks_assume():
    source = inspect.getsource(LightningCLI.__init__)
    steps = ["self.parse_arguments(", "self._parse_ckpt_path()", "self._set_seed()", "self.before_instantiate_classes()",
             "self.instantiate_classes()", "self._run_subcommand("]
    positions = [source.index(step) for step in steps]
    assert positions == sorted(positions)


def test_wandb_logger_internals_and_the_checked_version():
    assert "_wandb_init" in inspect.getsource(WandbLogger.__init__)
    assert "self._experiment" in inspect.getsource(WandbLogger.__init__)
    # a new Lightning minor version: re-check every name in hm2bp/cli_private.py, then update CHECKED_AGAINST
    assert pl.__version__.split(".")[:2] == cli_private.CHECKED_AGAINST.split(".")[:2]
